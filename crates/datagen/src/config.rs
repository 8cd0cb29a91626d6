//! A generator config (learn-druid's "generator specification"): emitters that say what a
//! record holds, states that say when sessions emit which record and where they go next, and
//! the interarrival distribution of new sessions. See `docs/datagen.md`.

use std::collections::HashSet;

use serde_json::Value;

use crate::dimension::{Dimension, Kind};
use crate::distribution::{Distribution, Unit};
use crate::fields::{ConfigError, Fields, error};

/// A checked generator config.
#[derive(Debug, Clone)]
pub struct Config {
    pub emitters: Vec<Emitter>,
    /// The first state is where every session starts.
    pub states: Vec<State>,
    /// Seconds between the starts of two sessions.
    pub interarrival: Distribution,
}

/// A record shape: the dimensions after the `time` field, in order.
#[derive(Debug, Clone)]
pub struct Emitter {
    pub name: String,
    pub dimensions: Vec<Dimension>,
}

/// A session state: the record it emits, how long the session then waits, where it goes next,
/// and the variables it sets on entering.
#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    /// Index into [`Config::emitters`].
    pub emitter: usize,
    /// Seconds to wait after emitting.
    pub delay: Distribution,
    pub transitions: Vec<Transition>,
    pub variables: Vec<Dimension>,
}

/// A possible next state with its relative weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Index into [`Config::states`]; None ends the session (`"next": "stop"`).
    pub next: Option<usize>,
    pub weight: f64,
}

impl Config {
    /// Reads and checks a config; errors name the field by its JSON path.
    pub fn parse(value: &Value) -> Result<Config, ConfigError> {
        let root = Fields::of(value, "")?;
        if let Some(kind) = root.optional_string("type")?
            && !kind.eq_ignore_ascii_case("generator")
        {
            return Err(root.error(
                "type",
                format!("'{kind}' configs are not supported; only generator configs (emitters and states) are"),
            ));
        }
        let mut emitters = Vec::new();
        for (path, item) in root.array("emitters")? {
            let fields = Fields::of(item, &path)?;
            let mut dimensions = Vec::new();
            for (path, item) in fields.array("dimensions")? {
                dimensions.push(Dimension::parse(item, &path)?);
            }
            let name = fields.string("name")?.to_string();
            if emitters.iter().any(|e: &Emitter| e.name == name) {
                return Err(fields.error("name", format!("a second emitter named '{name}'")));
            }
            emitters.push(Emitter { name, dimensions });
        }
        let state_items = root.array("states")?;
        if state_items.is_empty() {
            return Err(root.error("states", "needs at least one state"));
        }
        let mut names = Vec::new();
        for (path, item) in &state_items {
            let name = Fields::of(item, path)?.string("name")?;
            if name.eq_ignore_ascii_case("stop") || names.contains(&name) {
                return Err(error(
                    &format!("{path}.name"),
                    format!("'{name}' is reserved or used twice"),
                ));
            }
            names.push(name);
        }
        let mut states = Vec::new();
        for (path, item) in &state_items {
            let fields = Fields::of(item, path)?;
            let emitter_name = fields.string("emitter")?;
            let emitter = emitters
                .iter()
                .position(|e| e.name == emitter_name)
                .ok_or_else(|| {
                    fields.error("emitter", format!("no emitter is named '{emitter_name}'"))
                })?;
            let mut transitions = Vec::new();
            for (path, item) in fields.array("transitions")? {
                let transition = Fields::of(item, &path)?;
                let next_name = transition.string("next")?;
                let next = if next_name.eq_ignore_ascii_case("stop") {
                    None
                } else {
                    Some(names.iter().position(|n| *n == next_name).ok_or_else(|| {
                        transition.error("next", format!("no state is named '{next_name}'"))
                    })?)
                };
                let weight = transition.number("probability")?;
                if weight < 0.0 {
                    return Err(transition.error("probability", "must be at least 0"));
                }
                transitions.push(Transition { next, weight });
            }
            if transitions.iter().map(|t| t.weight).sum::<f64>() <= 0.0 {
                return Err(fields.error(
                    "transitions",
                    "needs a transition with a probability above 0",
                ));
            }
            let mut variables = Vec::new();
            if fields.get("variables").is_some() {
                for (path, item) in fields.array("variables")? {
                    variables.push(Dimension::parse(item, &path)?);
                }
            }
            states.push(State {
                name: fields.string("name")?.to_string(),
                emitter,
                delay: Distribution::parse(
                    fields.required("delay")?,
                    &fields.path_of("delay"),
                    Unit::Number,
                )?,
                transitions,
                variables,
            });
        }
        let interarrival =
            Distribution::parse(root.required("interarrival")?, "interarrival", Unit::Number)?;
        let config = Config {
            emitters,
            states,
            interarrival,
        };
        config.check_variables()?;
        Ok(config)
    }

    /// Every `variable` dimension must name a variable some state sets.
    fn check_variables(&self) -> Result<(), ConfigError> {
        let set: HashSet<&str> = self
            .states
            .iter()
            .flat_map(|s| s.variables.iter().map(|v| v.name.as_str()))
            .collect();
        for (e, emitter) in self.emitters.iter().enumerate() {
            for (d, dimension) in emitter.dimensions.iter().enumerate() {
                if let Kind::Variable(name) = &dimension.kind
                    && !set.contains(name.as_str())
                {
                    return Err(error(
                        &format!("emitters[{e}].dimensions[{d}].variable"),
                        format!("no state sets a variable named '{name}'"),
                    ));
                }
            }
        }
        Ok(())
    }
}
