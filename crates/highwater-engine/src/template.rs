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

/// `{window_start:FMT}` and `{window_end:FMT}` (FMT as
/// [`highwater_config::plan::window_format`] reads it; checked by the
/// config) from the window's bounds in UTC.
pub fn render_window(template: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else { break };
        let name = &after[..j];
        let value = [("window_start:", start), ("window_end:", end)]
            .into_iter()
            .find_map(|(p, t)| {
                let fmt = highwater_config::plan::window_format(name.strip_prefix(p)?)?;
                Some(t.format(&fmt).to_string())
            });
        match value {
            Some(v) => out.push_str(&v),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_window_placeholders() {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(
            super::render_window(
                "e/{window_start:yyyy}/{window_start:MM-dd}/{window_start:HH}-{window_end:HHmm}-{run_id}.csv",
                t("2026-03-04T05:00:00Z"),
                t("2026-03-04T06:00:00Z")
            ),
            "e/2026/03-04/05-0600-{run_id}.csv"
        );
    }

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
