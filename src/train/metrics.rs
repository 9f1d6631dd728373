//! The portal's evaluation numbers for one fold, and their combination over folds.
//!
//! # Rules
//! - **Multiclass** ([`multiclass`]): an image's prediction is its top tag (the lowest index on a
//!   tie) if that tag's probability is `>= threshold`, otherwise nothing. Predicting tag `t` is a
//!   true positive for `t` when the truth is `t`, else a false positive for `t`; an image whose
//!   prediction is not its truth (a wrong tag or nothing) is a false negative for its truth tag.
//! - **Multilabel** ([`multilabel`]): every tag with probability `>= threshold` is predicted, and
//!   each tag is counted on its own.
//! - **Precision** `TP / (TP + FP)` and **recall** `TP / (TP + FN)`; `0 / 0` is reported as 0,
//!   as the portal does (a tag never predicted shows precision 0).
//! - **Average precision** (per tag, independent of the threshold): the images are ranked by that
//!   tag's probability, highest first, and AP is the mean, over the tag's positive images, of the
//!   precision at the positive's rank (non-interpolated AP). Images with equal probability are one
//!   step of the ranking: every positive in a tie gets the precision after the whole tie, so the
//!   result does not depend on input order (this is scikit-learn's `average_precision_score`).
//!   A tag with no positive images has AP 0.
//! - **Overall**: precision and recall over the counts of all tags pooled (micro average); mean
//!   average precision over the tags that have positive images (0 if none has).
//! - **Across folds** ([`summarize`]): the mean and the *population* standard deviation (divide by
//!   the number of folds) of each number: the folds are all the folds there are, not a sample of
//!   them, and one fold then has deviation 0 rather than an undefined one. Every fold counts,
//!   including folds where a tag had no positives (and so recall and AP 0); stratified folds
//!   ([`super::folds::stratified_k_folds`]) avoid those.

use serde::{Deserialize, Serialize};

use super::EvaluationError;

/// One tag's numbers in one fold.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagMetrics {
    pub name: String,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub precision: f64,
    pub recall: f64,
    pub average_precision: f64,
    /// Images whose truth includes this tag; AP is only meaningful when this is non-zero.
    pub positives: usize,
}

/// One fold's numbers: per tag (in tag order) and overall.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub per_tag: Vec<TagMetrics>,
    pub precision: f64,
    pub recall: f64,
    pub mean_average_precision: f64,
}

/// One tag's numbers over all folds, named as in the portal's `perTagPerformance` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagSummary {
    pub name: String,
    pub precision: f64,
    pub precision_std_deviation: f64,
    pub recall: f64,
    pub recall_std_deviation: f64,
    pub average_precision: f64,
}

/// An iteration's numbers over all folds, named as in the portal's iteration performance JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub per_tag_performance: Vec<TagSummary>,
    pub precision: f64,
    pub precision_std_deviation: f64,
    pub recall: f64,
    pub recall_std_deviation: f64,
    /// Mean over folds of each fold's mean average precision.
    pub average_precision: f64,
}

/// Checks the probability matrix (`images × tags.len()`, no NaN) and the threshold.
fn check_probabilities(probabilities: &[Vec<f32>], tags: usize, threshold: f32) -> Result<(), EvaluationError> {
    if threshold.is_nan() {
        return Err(EvaluationError::ThresholdNotANumber);
    }
    for (image, row) in probabilities.iter().enumerate() {
        if row.len() != tags {
            return Err(EvaluationError::RowLength { image, found: row.len(), expected: tags });
        }
        if let Some(tag) = row.iter().position(|p| p.is_nan()) {
            return Err(EvaluationError::NotANumber { image, tag });
        }
    }
    Ok(())
}

fn check_tag(image: usize, tag: usize, tags: usize) -> Result<(), EvaluationError> {
    if tag >= tags {
        return Err(EvaluationError::TagOutOfRange { image, tag, tags });
    }
    Ok(())
}

fn check_truth_count(truths: usize, images: usize) -> Result<(), EvaluationError> {
    if truths != images {
        return Err(EvaluationError::TruthCount { truths, images });
    }
    Ok(())
}

/// The multiclass prediction for one image: its top tag (lowest index on a tie) if at or above
/// the threshold.
fn top_tag(row: &[f32], threshold: f32) -> Option<usize> {
    crate::head::top(row).filter(|&tag| row[tag] >= threshold)
}

/// `numerator / denominator`, with `0 / 0` reported as 0 (the portal's choice).
fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// Non-interpolated average precision of one tag: `scores[i]` is image `i`'s probability for the
/// tag, `positive[i]` whether its truth includes the tag. See the module doc for ties.
pub fn average_precision(scores: &[f32], positive: &[bool]) -> f64 {
    let total_positives = positive.iter().filter(|&&p| p).count();
    if total_positives == 0 {
        return 0.0;
    }
    let mut ranked: Vec<usize> = (0..scores.len()).collect();
    ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut seen, mut hits, mut sum) = (0usize, 0usize, 0.0f64);
    let mut start = 0;
    while start < ranked.len() {
        // The tie group: every image scored like `ranked[start]`.
        let mut end = start;
        while end < ranked.len() && scores[ranked[end]] == scores[ranked[start]] {
            end += 1;
        }
        let group_hits = ranked[start..end].iter().filter(|&&i| positive[i]).count();
        seen += end - start;
        hits += group_hits;
        sum += group_hits as f64 * ratio(hits, seen);
        start = end;
    }
    sum / total_positives as f64
}

/// Counts and scores from per-image truth and prediction masks (`images × tags`, row-major).
fn metrics_from_masks(tags: &[String], probabilities: &[Vec<f32>], truth: &[bool], predicted: &[bool]) -> Metrics {
    let n_tags = tags.len();
    let (mut all_tp, mut all_fp, mut all_fn) = (0, 0, 0);
    let mut ap_sum = 0.0;
    let mut tags_with_positives = 0;
    let per_tag = tags
        .iter()
        .enumerate()
        .map(|(tag, name)| {
            let cell = |image: usize| image * n_tags + tag;
            let images = 0..probabilities.len();
            let tp = images.clone().filter(|&i| predicted[cell(i)] && truth[cell(i)]).count();
            let fp = images.clone().filter(|&i| predicted[cell(i)] && !truth[cell(i)]).count();
            let fn_ = images.clone().filter(|&i| !predicted[cell(i)] && truth[cell(i)]).count();
            let scores: Vec<f32> = probabilities.iter().map(|row| row[tag]).collect();
            let positive: Vec<bool> = images.map(|i| truth[cell(i)]).collect();
            let positives = positive.iter().filter(|&&p| p).count();
            let ap = average_precision(&scores, &positive);
            if positives > 0 {
                tags_with_positives += 1;
                ap_sum += ap;
            }
            all_tp += tp;
            all_fp += fp;
            all_fn += fn_;
            TagMetrics {
                name: name.clone(),
                true_positives: tp,
                false_positives: fp,
                false_negatives: fn_,
                precision: ratio(tp, tp + fp),
                recall: ratio(tp, tp + fn_),
                average_precision: ap,
                positives,
            }
        })
        .collect();
    Metrics {
        per_tag,
        precision: ratio(all_tp, all_tp + all_fp),
        recall: ratio(all_tp, all_tp + all_fn),
        mean_average_precision: if tags_with_positives == 0 { 0.0 } else { ap_sum / tags_with_positives as f64 },
    }
}

/// One fold's multiclass metrics. `truth[i]` is image `i`'s tag index, `probabilities[i]` its
/// probabilities in the order of `tags`.
pub fn multiclass(tags: &[String], truth: &[usize], probabilities: &[Vec<f32>], threshold: f32) -> Result<Metrics, EvaluationError> {
    let n_tags = tags.len();
    check_truth_count(truth.len(), probabilities.len())?;
    check_probabilities(probabilities, n_tags, threshold)?;
    let mut truth_mask = vec![false; probabilities.len() * n_tags];
    let mut predicted = vec![false; probabilities.len() * n_tags];
    for (image, (&tag, row)) in truth.iter().zip(probabilities).enumerate() {
        check_tag(image, tag, n_tags)?;
        truth_mask[image * n_tags + tag] = true;
        if let Some(p) = top_tag(row, threshold) {
            predicted[image * n_tags + p] = true;
        }
    }
    Ok(metrics_from_masks(tags, probabilities, &truth_mask, &predicted))
}

/// One fold's multilabel metrics. `truth[i]` is the set of image `i`'s tag indices (duplicates are
/// ignored; empty means a negative image).
pub fn multilabel(tags: &[String], truth: &[Vec<usize>], probabilities: &[Vec<f32>], threshold: f32) -> Result<Metrics, EvaluationError> {
    let n_tags = tags.len();
    check_truth_count(truth.len(), probabilities.len())?;
    check_probabilities(probabilities, n_tags, threshold)?;
    let mut truth_mask = vec![false; probabilities.len() * n_tags];
    for (image, image_tags) in truth.iter().enumerate() {
        for &tag in image_tags {
            check_tag(image, tag, n_tags)?;
            truth_mask[image * n_tags + tag] = true;
        }
    }
    let predicted: Vec<bool> = probabilities.iter().flat_map(|row| row.iter().map(|&p| p >= threshold)).collect();
    Ok(metrics_from_masks(tags, probabilities, &truth_mask, &predicted))
}

/// Multiclass confusion matrix: `matrix[truth][predicted]` counts images, with one extra last
/// column (index `tags`) for images whose top probability is below the threshold. The tag count
/// is the probability rows' length; with no images the matrix is empty.
pub fn confusion(truth: &[usize], probabilities: &[Vec<f32>], threshold: f32) -> Result<Vec<Vec<usize>>, EvaluationError> {
    check_truth_count(truth.len(), probabilities.len())?;
    let n_tags = probabilities.first().map_or(0, Vec::len);
    check_probabilities(probabilities, n_tags, threshold)?;
    let mut matrix = vec![vec![0; n_tags + 1]; n_tags];
    for (image, (&tag, row)) in truth.iter().zip(probabilities).enumerate() {
        check_tag(image, tag, n_tags)?;
        matrix[tag][top_tag(row, threshold).unwrap_or(n_tags)] += 1;
    }
    Ok(matrix)
}

/// Mean and population standard deviation.
fn mean_and_deviation(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = values.clone().count() as f64;
    let mean = values.clone().sum::<f64>() / n;
    let variance = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// Combines folds into the portal's summary (see the module doc for the statistics). Every fold
/// must have been evaluated with the same tags in the same order.
pub fn summarize(per_fold: &[Metrics]) -> Result<Summary, EvaluationError> {
    let first = per_fold.first().ok_or(EvaluationError::NoFolds)?;
    for (fold, metrics) in per_fold.iter().enumerate() {
        let same_tags = metrics.per_tag.len() == first.per_tag.len()
            && metrics.per_tag.iter().zip(&first.per_tag).all(|(a, b)| a.name == b.name);
        if !same_tags {
            return Err(EvaluationError::FoldTagsDiffer { fold });
        }
    }
    let per_tag_performance = first
        .per_tag
        .iter()
        .enumerate()
        .map(|(tag, first_tag)| {
            let of = |field: fn(&TagMetrics) -> f64| per_fold.iter().map(move |m| field(&m.per_tag[tag]));
            let (precision, precision_std_deviation) = mean_and_deviation(of(|t| t.precision));
            let (recall, recall_std_deviation) = mean_and_deviation(of(|t| t.recall));
            let (average_precision, _) = mean_and_deviation(of(|t| t.average_precision));
            TagSummary {
                name: first_tag.name.clone(),
                precision,
                precision_std_deviation,
                recall,
                recall_std_deviation,
                average_precision,
            }
        })
        .collect();
    let (precision, precision_std_deviation) = mean_and_deviation(per_fold.iter().map(|m| m.precision));
    let (recall, recall_std_deviation) = mean_and_deviation(per_fold.iter().map(|m| m.recall));
    let (average_precision, _) = mean_and_deviation(per_fold.iter().map(|m| m.mean_average_precision));
    Ok(Summary { per_tag_performance, precision, precision_std_deviation, recall, recall_std_deviation, average_precision })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-9, "got {actual}, expected {expected}");
    }

    /// Six images, tags cat (0) and dog (1), threshold 0.6:
    ///
    /// ```text
    /// image  cat   dog   truth  prediction         counts
    ///   0    0.9   0.1   cat    cat                TP cat
    ///   1    0.8   0.2   dog    cat                FP cat, FN dog
    ///   2    0.35  0.65  cat    dog                FP dog, FN cat
    ///   3    0.38  0.62  dog    dog                TP dog
    ///   4    0.55  0.45  cat    none (0.55 < 0.6)  FN cat
    ///   5    0.4   0.6   dog    dog (0.6 >= 0.6)   TP dog
    /// ```
    /// cat: TP 1, FP 1, FN 2 → precision 1/2, recall 1/3.
    /// dog: TP 2, FP 1, FN 1 → precision 2/3, recall 2/3.
    /// Pooled: TP 3, FP 2, FN 3 → precision 3/5, recall 3/6.
    /// AP cat, ranked by cat: 0(.9)+ 1(.8)- 4(.55)+ 5(.4)- 3(.38)- 2(.35)+ → positives at ranks
    /// 1, 3, 6: (1/1 + 2/3 + 3/6) / 3 = 13/18.
    /// AP dog, ranked by dog: 2(.65)- 3(.62)+ 5(.6)+ 4(.45)- 1(.2)+ 0(.1)- → ranks 2, 3, 5:
    /// (1/2 + 2/3 + 3/5) / 3 = 53/90.
    /// mAP = (13/18 + 53/90) / 2 = 59/90.
    fn multiclass_example() -> (Vec<String>, Vec<usize>, Vec<Vec<f32>>) {
        let probabilities = vec![
            vec![0.9, 0.1],
            vec![0.8, 0.2],
            vec![0.35, 0.65],
            vec![0.38, 0.62],
            vec![0.55, 0.45],
            vec![0.4, 0.6],
        ];
        (names(&["cat", "dog"]), vec![0, 1, 0, 1, 0, 1], probabilities)
    }

    #[test]
    fn multiclass_hand_checked_example() {
        let (tags, truth, probabilities) = multiclass_example();
        let m = multiclass(&tags, &truth, &probabilities, 0.6).unwrap();
        let cat = &m.per_tag[0];
        let dog = &m.per_tag[1];
        assert_eq!((cat.name.as_str(), cat.true_positives, cat.false_positives, cat.false_negatives), ("cat", 1, 1, 2));
        assert_eq!((dog.name.as_str(), dog.true_positives, dog.false_positives, dog.false_negatives), ("dog", 2, 1, 1));
        close(cat.precision, 1.0 / 2.0);
        close(cat.recall, 1.0 / 3.0);
        close(dog.precision, 2.0 / 3.0);
        close(dog.recall, 2.0 / 3.0);
        close(cat.average_precision, 13.0 / 18.0);
        close(dog.average_precision, 53.0 / 90.0);
        close(m.precision, 3.0 / 5.0);
        close(m.recall, 3.0 / 6.0);
        close(m.mean_average_precision, 59.0 / 90.0);
    }

    #[test]
    fn multiclass_confusion_has_a_no_prediction_column() {
        let (_, truth, probabilities) = multiclass_example();
        // Rows are truth (cat, dog); columns predicted (cat, dog, none), per the table above.
        assert_eq!(confusion(&truth, &probabilities, 0.6).unwrap(), vec![vec![1, 1, 1], vec![1, 2, 0]]);
        // Slightly above 0.6, image 5 (dog 0.6) drops to "none" as well.
        assert_eq!(confusion(&truth, &probabilities, 0.6001).unwrap(), vec![vec![1, 1, 1], vec![1, 1, 1]]);
    }

    #[test]
    fn probability_equal_to_threshold_is_predicted() {
        let tags = names(&["a", "b"]);
        let at = multiclass(&tags, &[1], &[vec![0.25, 0.75]], 0.75).unwrap();
        assert_eq!(at.per_tag[1].true_positives, 1);
        let above = multiclass(&tags, &[1], &[vec![0.25, 0.75]], 0.7500001).unwrap();
        assert_eq!((above.per_tag[1].true_positives, above.per_tag[1].false_negatives), (0, 1));
        let at = multilabel(&tags, &[vec![0]], &[vec![0.5, 0.5]], 0.5).unwrap();
        assert_eq!((at.per_tag[0].true_positives, at.per_tag[1].false_positives), (1, 1));
    }

    /// Six images, tags a (0) and b (1), threshold 0.5:
    ///
    /// ```text
    /// image  a     b     truth   a       b
    ///   0    0.9   0.8   {a,b}   TP      TP
    ///   1    0.7   0.2   {a}     TP      -
    ///   2    0.6   0.5   {b}     FP      TP (0.5 >= 0.5)
    ///   3    0.3   0.4   {a}     FN      -
    ///   4    0.2   0.9   {}      -       FP
    ///   5    0.55  0.3   {b}     FP      FN
    /// ```
    /// a: TP 2, FP 2, FN 1 → precision 1/2, recall 2/3.
    /// b: TP 2, FP 1, FN 1 → precision 2/3, recall 2/3.
    /// Pooled: TP 4, FP 3, FN 2 → precision 4/7, recall 4/6.
    /// AP a, ranked by a: 0+ 1+ 2- 5- 3+ 4- → ranks 1, 2, 5: (1 + 1 + 3/5) / 3 = 13/15.
    /// AP b, ranked by b: 4- 0+ 2+ 3- 5+ 1- → ranks 2, 3, 5: (1/2 + 2/3 + 3/5) / 3 = 53/90.
    /// mAP = (13/15 + 53/90) / 2 = 131/180.
    #[test]
    fn multilabel_hand_checked_example() {
        let tags = names(&["a", "b"]);
        let truth = vec![vec![0, 1], vec![0], vec![1], vec![0], vec![], vec![1, 1]];
        let probabilities = vec![
            vec![0.9, 0.8],
            vec![0.7, 0.2],
            vec![0.6, 0.5],
            vec![0.3, 0.4],
            vec![0.2, 0.9],
            vec![0.55, 0.3],
        ];
        let m = multilabel(&tags, &truth, &probabilities, 0.5).unwrap();
        let (a, b) = (&m.per_tag[0], &m.per_tag[1]);
        assert_eq!((a.true_positives, a.false_positives, a.false_negatives, a.positives), (2, 2, 1, 3));
        assert_eq!((b.true_positives, b.false_positives, b.false_negatives, b.positives), (2, 1, 1, 3));
        close(a.precision, 1.0 / 2.0);
        close(a.recall, 2.0 / 3.0);
        close(b.precision, 2.0 / 3.0);
        close(b.recall, 2.0 / 3.0);
        close(a.average_precision, 13.0 / 15.0);
        close(b.average_precision, 53.0 / 90.0);
        close(m.precision, 4.0 / 7.0);
        close(m.recall, 4.0 / 6.0);
        close(m.mean_average_precision, 131.0 / 180.0);
    }

    #[test]
    fn average_precision_of_known_rankings() {
        // Perfect: every positive ranked above every negative.
        close(average_precision(&[0.9, 0.8, 0.3, 0.1], &[true, true, false, false]), 1.0);
        // Positives at ranks 2 and 3: (1/2 + 2/3) / 2 = 7/12.
        close(average_precision(&[0.9, 0.8, 0.7], &[false, true, true]), 7.0 / 12.0);
        // Worst: the single positive last of four: (1/4) / 1.
        close(average_precision(&[0.1, 0.2, 0.3, 0.4], &[true, false, false, false]), 0.25);
        // No positives: 0 by definition.
        close(average_precision(&[0.5, 0.4], &[false, false]), 0.0);
    }

    #[test]
    fn average_precision_treats_ties_as_one_step_whatever_the_input_order() {
        // A positive tied with a negative at the top: precision after the tie is 1/2.
        close(average_precision(&[0.5, 0.5], &[true, false]), 0.5);
        close(average_precision(&[0.5, 0.5], &[false, true]), 0.5);
        // Tie below a positive: ranks 1 then the tie (3 seen, 2 hits): (1 + 2/3) / 2 = 5/6.
        close(average_precision(&[0.4, 0.9, 0.4], &[false, true, true]), 5.0 / 6.0);
    }

    #[test]
    fn tags_without_positives_are_left_out_of_the_mean_average_precision() {
        let tags = names(&["seen", "never"]);
        let m = multiclass(&tags, &[0, 0], &[vec![0.9, 0.1], vec![0.2, 0.8]], 0.5).unwrap();
        assert_eq!(m.per_tag[1].positives, 0);
        close(m.per_tag[1].average_precision, 0.0);
        close(m.per_tag[0].average_precision, 1.0);
        close(m.mean_average_precision, 1.0);
        // "never" was predicted once, wrongly; "seen" missed once.
        close(m.per_tag[1].precision, 0.0);
        close(m.per_tag[0].recall, 0.5);
    }

    #[test]
    fn zero_over_zero_is_reported_as_zero() {
        let m = multilabel(&names(&["a"]), &[vec![]], &[vec![0.1]], 0.5).unwrap();
        close(m.per_tag[0].precision, 0.0);
        close(m.per_tag[0].recall, 0.0);
        close(m.precision, 0.0);
        close(m.recall, 0.0);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let tags = names(&["a", "b"]);
        assert_eq!(
            multiclass(&tags, &[0], &[vec![0.5]], 0.5),
            Err(EvaluationError::RowLength { image: 0, found: 1, expected: 2 })
        );
        assert_eq!(
            multiclass(&tags, &[0, 1], &[vec![0.5, 0.5]], 0.5),
            Err(EvaluationError::TruthCount { truths: 2, images: 1 })
        );
        assert_eq!(
            multilabel(&tags, &[vec![2]], &[vec![0.5, 0.5]], 0.5),
            Err(EvaluationError::TagOutOfRange { image: 0, tag: 2, tags: 2 })
        );
        assert_eq!(
            confusion(&[0], &[vec![0.5, f32::NAN]], 0.5),
            Err(EvaluationError::NotANumber { image: 0, tag: 1 })
        );
        assert_eq!(multiclass(&tags, &[0], &[vec![0.5, 0.5]], f32::NAN), Err(EvaluationError::ThresholdNotANumber));
        assert_eq!(summarize(&[]), Err(EvaluationError::NoFolds));
        let a = multiclass(&tags, &[0], &[vec![0.9, 0.1]], 0.5).unwrap();
        let c = multiclass(&names(&["a", "c"]), &[0], &[vec![0.9, 0.1]], 0.5).unwrap();
        assert_eq!(summarize(&[a, c]), Err(EvaluationError::FoldTagsDiffer { fold: 1 }));
    }

    #[test]
    fn identical_folds_have_zero_deviation() {
        let (tags, truth, probabilities) = multiclass_example();
        let fold = multiclass(&tags, &truth, &probabilities, 0.6).unwrap();
        let s = summarize(&[fold.clone(), fold.clone(), fold.clone()]).unwrap();
        close(s.precision, 3.0 / 5.0);
        close(s.precision_std_deviation, 0.0);
        close(s.recall_std_deviation, 0.0);
        close(s.average_precision, 59.0 / 90.0);
        for tag in &s.per_tag_performance {
            close(tag.precision_std_deviation, 0.0);
            close(tag.recall_std_deviation, 0.0);
        }
        close(s.per_tag_performance[1].recall, 2.0 / 3.0);
    }

    #[test]
    fn summary_uses_the_population_deviation() {
        let tags = names(&["a", "b"]);
        // Fold 1: one correct prediction (precision 1); fold 2: one wrong (precision 0).
        let right = multiclass(&tags, &[0], &[vec![0.9, 0.1]], 0.5).unwrap();
        let wrong = multiclass(&tags, &[0], &[vec![0.1, 0.9]], 0.5).unwrap();
        let s = summarize(&[right, wrong]).unwrap();
        close(s.precision, 0.5);
        close(s.precision_std_deviation, 0.5); // sample deviation would be 0.707…
        close(s.recall, 0.5);
        close(s.recall_std_deviation, 0.5);
        close(s.per_tag_performance[0].recall, 0.5);
        close(s.per_tag_performance[0].recall_std_deviation, 0.5);
        // AP of a: 1 in the first fold, 1 (the only image, ranked first) in the second.
        close(s.per_tag_performance[0].average_precision, 1.0);
    }

    #[test]
    fn summary_serializes_with_the_portal_field_names() {
        let (tags, truth, probabilities) = multiclass_example();
        let s = summarize(&[multiclass(&tags, &truth, &probabilities, 0.6).unwrap()]).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["perTagPerformance", "precision", "precisionStdDeviation", "recall", "recallStdDeviation", "averagePrecision"]
        );
        let tag = &json["perTagPerformance"][0];
        let tag_keys: Vec<&str> = tag.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(tag_keys, ["name", "precision", "precisionStdDeviation", "recall", "recallStdDeviation", "averagePrecision"]);
        assert_eq!(tag["name"], "cat");
    }
}
