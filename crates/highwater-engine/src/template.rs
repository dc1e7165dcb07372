//! `path:` templates: `{stream}`, `{run_id}`, `{yyyy}`, `{MM}`, `{dd}`,
//! `{HH}`, `{mm}` from the run's start time in UTC. Placeholders were
//! checked by the config; rendering cannot fail.

use chrono::{DateTime, Utc};

pub fn render(template: &str, stream: &str, run_id: &str, at: DateTime<Utc>) -> String {
    template
        .replace("{stream}", stream)
        .replace("{run_id}", run_id)
        .replace("{yyyy}", &at.format("%Y").to_string())
        .replace("{MM}", &at.format("%m").to_string())
        .replace("{dd}", &at.format("%d").to_string())
        .replace("{HH}", &at.format("%H").to_string())
        .replace("{mm}", &at.format("%M").to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_all_placeholders() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            super::render(
                "{stream}/{yyyy}/{MM}/{dd}/{HH}{mm}-{run_id}.csv",
                "s",
                "r",
                at
            ),
            "s/2026/03/04/0506-r.csv"
        );
    }
}
