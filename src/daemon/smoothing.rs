//! Smoothing per-frame results into a camera's state: a set of tags becomes the state only after
//! it has been the result of N consecutive frames (a cat walking past one frame is not "cat").
//! Multiclass results are at most one tag (the best one, if above the threshold); multilabel
//! results are every tag above the threshold. The empty set is a state too ("nothing").

use std::collections::BTreeSet;

use crate::classifier::Kind;

#[derive(Debug, Clone)]
pub struct Smoother {
    needed: u32,
    threshold: f32,
    kind: Kind,
    candidate: Option<BTreeSet<usize>>,
    seen: u32,
    state: Option<BTreeSet<usize>>,
}

impl Smoother {
    pub fn new(needed: u32, threshold: f32, kind: Kind) -> Smoother {
        Smoother { needed: needed.max(1), threshold, kind, candidate: None, seen: 0, state: None }
    }

    /// The tags one frame's probabilities vote for.
    pub fn result(&self, probabilities: &[f32]) -> BTreeSet<usize> {
        let above = (0..probabilities.len()).filter(|&i| probabilities[i] >= self.threshold);
        match self.kind {
            Kind::MultiLabel => above.collect(),
            Kind::MultiClass => above.max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b])).into_iter().collect(),
        }
    }

    /// Feeds one frame; returns the new state when it changes.
    pub fn push(&mut self, probabilities: &[f32]) -> Option<&BTreeSet<usize>> {
        let result = self.result(probabilities);
        if self.candidate.as_ref() == Some(&result) {
            self.seen = self.seen.saturating_add(1);
        } else {
            self.candidate = Some(result);
            self.seen = 1;
        }
        if self.seen >= self.needed && self.state != self.candidate {
            self.state = self.candidate.clone();
            return self.state.as_ref();
        }
        None
    }

    /// The current state (`None` until some result has been stable for N frames).
    pub fn state(&self) -> Option<&BTreeSet<usize>> {
        self.state.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAT: [f32; 2] = [0.9, 0.1];
    const DOG: [f32; 2] = [0.2, 0.8];
    const UNSURE: [f32; 2] = [0.45, 0.4];

    #[test]
    fn state_changes_only_after_n_consecutive_results() {
        let mut s = Smoother::new(3, 0.5, Kind::MultiClass);
        assert_eq!(s.push(&CAT), None);
        assert_eq!(s.push(&CAT), None);
        assert_eq!(s.push(&CAT).cloned(), Some(BTreeSet::from([0])));
        assert_eq!(s.push(&CAT), None, "unchanged state is not re-emitted");
        assert_eq!(s.push(&DOG), None);
        assert_eq!(s.push(&CAT), None, "one odd frame resets the run");
        assert_eq!(s.push(&DOG), None);
        assert_eq!(s.push(&DOG), None);
        assert_eq!(s.push(&DOG).cloned(), Some(BTreeSet::from([1])));
        for _ in 0..2 {
            assert_eq!(s.push(&UNSURE), None);
        }
        assert_eq!(s.push(&UNSURE).cloned(), Some(BTreeSet::new()), "below threshold is the empty state");
    }

    #[test]
    fn multilabel_states_are_sets() {
        let mut s = Smoother::new(1, 0.5, Kind::MultiLabel);
        assert_eq!(s.push(&[0.9, 0.7, 0.1]).cloned(), Some(BTreeSet::from([0, 1])));
        assert_eq!(s.state().cloned(), Some(BTreeSet::from([0, 1])));
    }
}
