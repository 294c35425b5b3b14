//! The script: expectations in order (or in any order), matched against each request; every
//! mismatch is recorded for [`crate::StandIn::finish`].

use crate::expect::{Expect, Incoming, Times};

#[derive(Default)]
pub(crate) struct Script {
    pub expected: Vec<Expect>,
    next: usize,
    /// Requests matched by the current `Repeatedly` expectation.
    repeats: usize,
    pub problems: Vec<String>,
    pub seen: Vec<String>,
    /// Any-order matching: which expectations have been used.
    unordered: Option<Vec<bool>>,
}

impl Script {
    pub fn ordered(expected: Vec<Expect>) -> Script {
        Script {
            expected,
            ..Default::default()
        }
    }

    pub fn unordered(expected: Vec<Expect>) -> Script {
        Script {
            unordered: Some(vec![false; expected.len()]),
            expected,
            ..Default::default()
        }
    }

    /// The index of the expectation that answers `req`, or the status and message to answer
    /// instead; either way the request is recorded, and a mismatch is a problem.
    pub fn take(&mut self, req: &Incoming) -> Result<usize, (u16, String)> {
        let line = req.line();
        self.seen.push(line.clone());
        if !req.authorised {
            self.problems
                .push(format!("{line}: missing or wrong bearer token"));
            return Err((401, "Unauthorized".into()));
        }
        let found = match &self.unordered {
            Some(_) => self.take_unordered(req),
            None => self.take_next(req),
        };
        found.map_err(|problem| {
            self.problems.push(format!("{line}: {problem}"));
            (500, format!("stand-in: {problem}"))
        })
    }

    fn take_unordered(&mut self, req: &Incoming) -> Result<usize, String> {
        let used = self.unordered.as_mut().expect("unordered script");
        let found = (0..self.expected.len())
            .find(|&i| !used[i] && self.expected[i].mismatch(req).is_none());
        let i = found.ok_or_else(|| "matches no unused expectation".to_string())?;
        used[i] = true;
        Ok(i)
    }

    fn take_next(&mut self, req: &Incoming) -> Result<usize, String> {
        loop {
            let Some(e) = self.expected.get(self.next) else {
                return Err("unexpected request after the script ended".into());
            };
            match e.mismatch(req) {
                None if e.times == Times::Once => {
                    self.next += 1;
                    return Ok(self.next - 1);
                }
                None => {
                    self.repeats += 1;
                    return Ok(self.next);
                }
                // A satisfied repeated expectation gives way to the next one.
                Some(_) if e.times == Times::Repeatedly && self.repeats > 0 => {
                    self.next += 1;
                    self.repeats = 0;
                }
                Some(why) => return Err(format!("expected {} ({why})", e.describe())),
            }
        }
    }

    /// Expectations never met (a satisfied repeated one at the end counts as met).
    pub fn unmet(&self) -> Vec<&Expect> {
        match &self.unordered {
            Some(used) => self
                .expected
                .iter()
                .zip(used)
                .filter(|(_, used)| !**used)
                .map(|(e, _)| e)
                .collect(),
            None => {
                let current_done = self.next < self.expected.len()
                    && self.expected[self.next].times == Times::Repeatedly
                    && self.repeats > 0;
                let done = self.next + usize::from(current_done);
                self.expected.iter().skip(done).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(method: &str, path: &str) -> Incoming {
        Incoming {
            method: method.into(),
            path: path.into(),
            authorised: true,
            ..Default::default()
        }
    }

    #[test]
    fn ordered_scripts_match_in_order_and_name_the_mismatch() {
        let mut s = Script::ordered(vec![Expect::get("/a"), Expect::get("/b")]);
        let e = s.take(&req("GET", "/b")).unwrap_err();
        assert_eq!(e.0, 500);
        assert!(
            s.problems[0].contains("GET /b: expected GET /a (method or path)"),
            "{:?}",
            s.problems
        );
        assert_eq!(s.take(&req("GET", "/a")), Ok(0));
        assert_eq!(s.take(&req("GET", "/b")), Ok(1));
        assert!(s
            .take(&req("GET", "/c"))
            .unwrap_err()
            .1
            .contains("after the script ended"));
        assert!(s.unmet().is_empty());
        assert_eq!(s.seen, ["GET /b", "GET /a", "GET /b", "GET /c"]);
    }

    #[test]
    fn a_repeated_expectation_gives_way_only_once_it_has_matched() {
        let mut s = Script::ordered(vec![
            Expect::get("/poll").repeatedly(),
            Expect::get("/done"),
        ]);
        assert!(
            s.take(&req("GET", "/done")).is_err(),
            "the poll must match at least once"
        );
        let mut s = Script::ordered(vec![
            Expect::get("/poll").repeatedly(),
            Expect::get("/done"),
        ]);
        assert_eq!(s.take(&req("GET", "/poll")), Ok(0));
        assert_eq!(s.take(&req("GET", "/poll")), Ok(0));
        assert_eq!(s.unmet().len(), 1, "/done is still due");
        assert_eq!(s.take(&req("GET", "/done")), Ok(1));
        assert!(s.unmet().is_empty() && s.problems.is_empty());
    }

    #[test]
    fn query_content_type_and_body_are_checked_exactly() {
        let apply = || {
            Expect::apply("/x", "torchship").body(|b| match b["kind"] == "Service" {
                true => Ok(()),
                false => Err(format!("kind {}", b["kind"])),
            })
        };
        let mut good = req("PATCH", "/x");
        good.query.insert("fieldManager".into(), "torchship".into());
        good.content_type = Some("application/apply-patch+yaml".into());
        good.body = json!({"kind": "Service"});
        assert!(apply().mismatch(&good).is_none());
        let mut extra = good.clone();
        extra.query.insert("force".into(), "true".into());
        assert!(apply().mismatch(&extra).unwrap().starts_with("query"));
        let mut merge = good.clone();
        merge.content_type = Some("application/merge-patch+json".into());
        assert!(apply().mismatch(&merge).unwrap().contains("content type"));
        let mut wrong = good.clone();
        wrong.body = json!({"kind": "Pod"});
        assert_eq!(apply().mismatch(&wrong).unwrap(), "kind \"Pod\"");
        let eq = Expect::new("POST", "/x").body_eq(json!({"a": 1}));
        let mut post = req("POST", "/x");
        post.body = json!({"a": 2});
        assert!(eq.mismatch(&post).unwrap().contains("body differs"));
    }

    #[test]
    fn unordered_scripts_use_each_expectation_once_and_tokens_are_required() {
        let mut s = Script::unordered(vec![Expect::get("/a"), Expect::get("/b")]);
        assert_eq!(s.take(&req("GET", "/b")), Ok(1));
        assert!(s.take(&req("GET", "/b")).is_err(), "/b is used up");
        assert_eq!(s.unmet().len(), 1);
        let mut anonymous = req("GET", "/a");
        anonymous.authorised = false;
        assert_eq!(s.take(&anonymous).unwrap_err().0, 401);
        assert!(s.problems.iter().any(|p| p.contains("bearer token")));
    }
}
