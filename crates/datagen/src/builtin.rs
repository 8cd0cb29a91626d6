//! The configs every millrace knows by name, written for millrace after learn-druid's
//! configs of the same names.

const CONFIGS: &[(&str, &str)] = &[
    (
        "social/social_posts.json",
        include_str!("configs/social/social_posts.json"),
    ),
    (
        "clickstream/clickstream.json",
        include_str!("configs/clickstream/clickstream.json"),
    ),
    ("iot/sensors.json", include_str!("configs/iot/sensors.json")),
];

/// A built-in config's JSON text.
pub fn find(name: &str) -> Option<&'static str> {
    let name = name
        .trim_start_matches("./")
        .trim_start_matches("config_file/");
    CONFIGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// The built-in configs' names.
pub fn names() -> Vec<&'static str> {
    CONFIGS.iter().map(|(name, _)| *name).collect()
}
