//! Deterministic k-fold splits. A fold is `(train indices, validation indices)`, both ascending;
//! over the `k` folds every item is validated exactly once and never trained on in its own fold.
//!
//! The shuffle is a SplitMix64 generator written here rather than a `rand` dependency: the splits
//! must be reproducible from the seed forever (a training report names its seed), and a crate's
//! generator may change between versions.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, full-period over 2^64, well mixed from any seed,
/// including 0.
pub(crate) struct SplitMix64(pub u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`) by Lemire's multiply-shift; the bias, below
    /// `bound / 2^64`, is irrelevant for dataset sizes.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        ((self.next() as u128 * bound as u128) >> 64) as usize
    }

    /// Fisher–Yates.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The fold count actually used: `k` clamped to `2..=n_items`, since a fold needs at least one
/// validation item and there must be at least two folds for every train set to be non-empty.
fn clamp_k(n_items: usize, k: usize) -> usize {
    k.clamp(2, n_items)
}

/// Turns a fold assignment (`fold_of[item]`) into `(train, validation)` pairs, both ascending.
fn folds_from_assignment(fold_of: &[usize], k: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    (0..k)
        .map(|fold| {
            let (validation, train): (Vec<usize>, Vec<usize>) = (0..fold_of.len()).partition(|&item| fold_of[item] == fold);
            (train, validation)
        })
        .collect()
}

/// Splits items `0..n_items` into `k` folds of shuffled items whose sizes differ by at most 1.
///
/// `k` is clamped to `2..=n_items`. With fewer than 2 items no split can have both a train and a
/// validation item, so the result is empty; callers should then train on everything and report
/// no cross-validated metrics.
pub fn k_folds(n_items: usize, k: usize, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    if n_items < 2 {
        return Vec::new();
    }
    let k = clamp_k(n_items, k);
    let mut order: Vec<usize> = (0..n_items).collect();
    SplitMix64(seed).shuffle(&mut order);
    // Dealing the shuffled items round-robin makes fold sizes differ by at most 1.
    let mut fold_of = vec![0; n_items];
    for (position, &item) in order.iter().enumerate() {
        fold_of[item] = position % k;
    }
    folds_from_assignment(&fold_of, k)
}

/// Like [`k_folds`] over `labels.len()` items, but each class (label value) is spread across the
/// folds as evenly as possible: in every fold a class has `⌊n_c/k⌋` or `⌈n_c/k⌉` items, and fold
/// sizes overall still differ by at most 1. For multiclass data, where a fold missing a tag would
/// report that tag's recall and average precision as 0.
///
/// Same clamping and `< 2` items behaviour as [`k_folds`]. A class with fewer than `k` images
/// necessarily misses some folds' validation sets.
pub fn stratified_k_folds(labels: &[usize], k: usize, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    let n_items = labels.len();
    if n_items < 2 {
        return Vec::new();
    }
    let k = clamp_k(n_items, k);
    let mut rng = SplitMix64(seed);
    let mut classes: Vec<usize> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let mut fold_of = vec![0; n_items];
    // One round-robin dealer continues from class to class: each class alone is dealt evenly, and
    // the concatenation of all classes is too, so overall fold sizes also differ by at most 1.
    let mut position = 0;
    for class in classes {
        let mut members: Vec<usize> = (0..n_items).filter(|&item| labels[item] == class).collect();
        rng.shuffle(&mut members);
        for item in members {
            fold_of[item] = position % k;
            position += 1;
        }
    }
    folds_from_assignment(&fold_of, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the invariants every split must hold and returns the validation sizes.
    fn assert_valid_split(folds: &[(Vec<usize>, Vec<usize>)], n_items: usize) -> Vec<usize> {
        let mut validated = vec![0; n_items];
        for (train, validation) in folds {
            assert!(!train.is_empty() && !validation.is_empty(), "empty side in {train:?} / {validation:?}");
            let mut seen = vec![false; n_items];
            for &item in train.iter().chain(validation) {
                assert!(!seen[item], "item {item} is in both train and validation (or twice)");
                seen[item] = true;
            }
            assert!(seen.iter().all(|&s| s), "train ∪ validation is not every item");
            for &item in validation {
                validated[item] += 1;
            }
        }
        assert!(validated.iter().all(|&times| times == 1), "validation counts per item: {validated:?}");
        folds.iter().map(|(_, validation)| validation.len()).collect()
    }

    fn spread(sizes: &[usize]) -> usize {
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap()
    }

    #[test]
    fn k_folds_cover_every_item_once_without_leakage_and_balanced() {
        for n_items in 2..40 {
            for k in [2, 3, 5, 10] {
                let folds = k_folds(n_items, k, 7);
                assert_eq!(folds.len(), k.min(n_items));
                let sizes = assert_valid_split(&folds, n_items);
                assert!(spread(&sizes) <= 1, "n={n_items} k={k} sizes {sizes:?}");
            }
        }
    }

    #[test]
    fn k_is_clamped_and_tiny_inputs_give_no_folds() {
        assert_eq!(k_folds(10, 0, 1).len(), 2);
        assert_eq!(k_folds(10, 1, 1).len(), 2);
        assert_eq!(k_folds(4, 100, 1).len(), 4);
        assert!(k_folds(0, 5, 1).is_empty());
        assert!(k_folds(1, 5, 1).is_empty());
        assert!(stratified_k_folds(&[3], 5, 1).is_empty());
    }

    #[test]
    fn splits_are_deterministic_per_seed_and_shuffled() {
        assert_eq!(k_folds(50, 5, 42), k_folds(50, 5, 42));
        assert_ne!(k_folds(50, 5, 42), k_folds(50, 5, 43));
        // Shuffled, not sliced: the first fold is not simply every k-th item.
        let unshuffled: Vec<usize> = (0..50).step_by(5).collect();
        assert_ne!(k_folds(50, 5, 42)[0].1, unshuffled);
        let labels: Vec<usize> = (0..60).map(|i| i % 4).collect();
        assert_eq!(stratified_k_folds(&labels, 5, 9), stratified_k_folds(&labels, 5, 9));
        assert_ne!(stratified_k_folds(&labels, 5, 9), stratified_k_folds(&labels, 5, 10));
    }

    #[test]
    fn stratified_folds_spread_each_class_evenly() {
        // Unbalanced classes with sizes that do not divide by k, interleaved in the input.
        let counts = [13, 7, 3, 1, 20];
        let mut labels = Vec::new();
        for round in 0..20 {
            for (class, &count) in counts.iter().enumerate() {
                if round < count {
                    labels.push(class * 10); // label values need not be contiguous
                }
            }
        }
        for k in [2, 3, 5] {
            let folds = stratified_k_folds(&labels, k, 3);
            assert_eq!(folds.len(), k);
            let sizes = assert_valid_split(&folds, labels.len());
            assert!(spread(&sizes) <= 1, "k={k} fold sizes {sizes:?}");
            for (class, &count) in counts.iter().enumerate() {
                let per_fold: Vec<usize> = folds
                    .iter()
                    .map(|(_, validation)| validation.iter().filter(|&&i| labels[i] == class * 10).count())
                    .collect();
                assert_eq!(per_fold.iter().sum::<usize>(), count);
                assert!(spread(&per_fold) <= 1, "k={k} class {class} per fold {per_fold:?}");
            }
        }
    }

    #[test]
    fn shuffle_is_a_permutation_and_uniform_enough() {
        // Each item should land in each position about equally often over many seeds.
        let mut first_position = [0usize; 4];
        for seed in 0..4000 {
            let mut items = [0, 1, 2, 3];
            SplitMix64(seed).shuffle(&mut items);
            let mut sorted = items;
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2, 3]);
            first_position[items[0]] += 1;
        }
        assert!(first_position.iter().all(|&c| (850..1150).contains(&c)), "{first_position:?}");
    }
}
