//! The discrete-event simulation behind a job: sessions start at interarrival times (at most
//! `concurrency` at once), each emits its state's record, waits its delay, and moves on by
//! its transitions. One thread runs every session in time order, so a seeded run is
//! reproducible and a simulated hour takes as long as its records take to write.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::config::Config;
use crate::dimension::{Context, push_time};
use crate::fields::ConfigError;
use crate::random::Random;

/// When a session may not start because `concurrency` are running, the next try is this much
/// later (learn-druid's spawner waits the same).
const FULL_RETRY_MICROS: i64 = 5_000_000;

/// How a job ends on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// After this many records.
    Events(u64),
    /// When the simulated clock passes the start plus this many milliseconds.
    Duration(i64),
    /// Never: the job runs until stopped.
    None,
}

/// A simulation's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Where the simulated clock starts, epoch milliseconds.
    pub start_ms: i64,
    /// The most sessions alive at once.
    pub concurrency: usize,
    pub limit: Limit,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Actor {
    Spawner,
    Session(usize),
}

#[derive(Debug)]
struct Session {
    state: usize,
    /// False until the session emitted its first record.
    started: bool,
    variables: Vec<(String, Vec<u8>)>,
}

/// What [`Simulation::next_record`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A record, written out; its time (epoch milliseconds).
    Record(i64),
    /// Nothing due yet: the next event is at this time (epoch milliseconds).
    NotYet(i64),
    /// The limit is reached.
    Done,
}

/// A running simulation; [`Simulation::next_record`] yields records in time order.
pub struct Simulation {
    config: Config,
    random: Random,
    /// Wake-ups by time (microseconds) and then by when they were scheduled.
    queue: BinaryHeap<Reverse<(i64, u64, Actor)>>,
    scheduled: u64,
    sessions: Vec<Option<Session>>,
    free_slots: Vec<usize>,
    active: usize,
    concurrency: usize,
    clock_us: i64,
    end_us: Option<i64>,
    max_records: Option<u64>,
    records: u64,
    finished: bool,
    /// Where a state variable's value is drawn before it is copied into its session.
    scratch: Vec<u8>,
}

impl Simulation {
    /// Prepares a simulation (draws every dimension's fixed value set).
    pub fn new(mut config: Config, settings: Settings) -> Result<Simulation, ConfigError> {
        if settings.concurrency == 0 {
            return Err(crate::fields::error("concurrency", "must be at least 1"));
        }
        let mut random = Random::new(settings.seed);
        for dimension in config
            .emitters
            .iter_mut()
            .flat_map(|e| e.dimensions.iter_mut())
            .chain(
                config
                    .states
                    .iter_mut()
                    .flat_map(|s| s.variables.iter_mut()),
            )
        {
            dimension.prepare(&mut random)?;
        }
        let start_us = settings.start_ms * 1000;
        let (end_us, max_records) = match settings.limit {
            Limit::Events(n) => (None, Some(n)),
            Limit::Duration(ms) => (Some(start_us + ms * 1000), None),
            Limit::None => (None, None),
        };
        let mut simulation = Simulation {
            config,
            random,
            queue: BinaryHeap::new(),
            scheduled: 0,
            sessions: Vec::new(),
            free_slots: Vec::new(),
            active: 0,
            concurrency: settings.concurrency,
            clock_us: start_us,
            end_us,
            max_records,
            records: 0,
            finished: false,
            scratch: Vec::new(),
        };
        simulation.schedule(start_us, Actor::Spawner);
        Ok(simulation)
    }

    fn schedule(&mut self, at_us: i64, actor: Actor) {
        self.scheduled += 1;
        self.queue.push(Reverse((at_us, self.scheduled, actor)));
    }

    /// A delay drawn in seconds as microseconds; negative delays do not move the clock.
    fn later(&self, seconds: f64) -> i64 {
        self.clock_us + (seconds.max(0.0) * 1e6).min(1e15) as i64
    }

    /// The simulated time of the next wake-up (epoch milliseconds), None when finished. A
    /// job paced to the wall clock waits until then.
    pub fn next_time_ms(&self) -> Option<i64> {
        if self.finished || self.max_records.is_some_and(|max| self.records >= max) {
            return None;
        }
        let Reverse((at, _, _)) = self.queue.peek()?;
        // Past the duration limit nothing is due any more.
        if self.end_us.is_some_and(|end| *at > end) {
            return None;
        }
        Some(at.div_euclid(1000))
    }

    /// The simulated clock, epoch milliseconds.
    pub fn clock_ms(&self) -> i64 {
        self.clock_us.div_euclid(1000)
    }

    /// Sessions alive now.
    pub fn active_sessions(&self) -> usize {
        self.active
    }

    /// Records emitted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Runs the simulation to its next record, writes the record into `out` (cleared first)
    /// and returns its time; with `not_after_ms`, stops instead before any event later than
    /// that (a job paced to the wall clock passes now).
    pub fn next_record(&mut self, out: &mut Vec<u8>, not_after_ms: Option<i64>) -> Step {
        loop {
            let Some(next_ms) = self.next_time_ms() else {
                self.finished = true;
                return Step::Done;
            };
            if not_after_ms.is_some_and(|limit| next_ms > limit) {
                return Step::NotYet(next_ms);
            }
            let Some(Reverse((at_us, _, actor))) = self.queue.pop() else {
                return Step::Done;
            };
            self.clock_us = at_us;
            match actor {
                Actor::Spawner => self.spawn(),
                Actor::Session(slot) => {
                    if self.advance(slot) {
                        self.emit(slot, out);
                        return Step::Record(self.clock_ms());
                    }
                }
            }
        }
    }

    fn spawn(&mut self) {
        if self.active >= self.concurrency {
            self.schedule(self.clock_us + FULL_RETRY_MICROS, Actor::Spawner);
            return;
        }
        let session = Session {
            state: 0,
            started: false,
            variables: Vec::new(),
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.sessions[slot] = Some(session);
                slot
            }
            None => {
                self.sessions.push(Some(session));
                self.sessions.len() - 1
            }
        };
        self.active += 1;
        self.schedule(self.clock_us, Actor::Session(slot));
        let wait = self.config.interarrival.sample(&mut self.random);
        let next = self.later(wait);
        self.schedule(next, Actor::Spawner);
    }

    /// Moves a waking session to its next state; false when it ended (`stop`).
    fn advance(&mut self, slot: usize) -> bool {
        let Some(session) = self.sessions[slot].as_mut() else {
            return false;
        };
        if session.started {
            let transitions = &self.config.states[session.state].transitions;
            let total: f64 = transitions.iter().map(|t| t.weight).sum();
            let mut pick = self.random.unit() * total;
            let mut next = transitions.last().and_then(|t| t.next);
            for transition in transitions {
                if pick < transition.weight {
                    next = transition.next;
                    break;
                }
                pick -= transition.weight;
            }
            match next {
                Some(state) => session.state = state,
                None => {
                    self.sessions[slot] = None;
                    self.free_slots.push(slot);
                    self.active -= 1;
                    return false;
                }
            }
        }
        session.started = true;
        true
    }

    /// Sets the state's variables, writes its emitter's record and schedules the next wake-up.
    fn emit(&mut self, slot: usize, out: &mut Vec<u8>) {
        let clock_ms = self.clock_ms();
        let session = self.sessions[slot].as_mut().expect("a live session");
        let state = &mut self.config.states[session.state];
        for variable in &mut state.variables {
            // Drawn into a buffer kept for the purpose, then copied into the session's own:
            // no allocation per record once a session has its variables.
            self.scratch.clear();
            let context = Context {
                clock_ms,
                variables: &session.variables,
            };
            variable.write_value(&mut self.random, &context, &mut self.scratch);
            match session
                .variables
                .iter_mut()
                .find(|(n, _)| *n == variable.name)
            {
                Some((_, old)) => {
                    old.clear();
                    old.extend_from_slice(&self.scratch);
                }
                None => session
                    .variables
                    .push((variable.name.clone(), self.scratch.clone())),
            }
        }
        out.clear();
        out.extend_from_slice(b"{\"time\":");
        push_time(out, clock_ms);
        let context = Context {
            clock_ms,
            variables: &session.variables,
        };
        for dimension in &mut self.config.emitters[state.emitter].dimensions {
            let mark = out.len();
            out.push(b',');
            if !dimension.write_field(&mut self.random, &context, out) {
                out.truncate(mark);
            }
        }
        out.push(b'}');
        self.records += 1;
        let delay = state.delay.sample(&mut self.random);
        let at = self.later(delay);
        self.schedule(at, Actor::Session(slot));
    }
}
