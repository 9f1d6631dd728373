//! Preprocessing equals the cloud's Python path to the bit: Pillow decode + EXIF orientation +
//! OpenCV INTER_LINEAR resize and the crop recipes, compared by SHA1 of the cropped pixels
//! recorded by `scripts/reference_outputs.py`.

mod common;

use common::*;
use cvedge::preprocess::{ColorOrder, Conventions, Layout, Preprocess, Preprocessor, ValueRange};
use cvedge::source::decode;

#[test]
fn crops_are_bit_identical_to_pillow_and_opencv() {
    let text = std::fs::read_to_string(repo().join("tests/golden/reference_outputs.json")).unwrap();
    let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pixels = golden["pixels"].as_object().expect("golden has a pixels section");
    let mut checked = 0;
    for (image, recipes) in pixels {
        let frame = decode(&std::fs::read(repo().join(image)).unwrap(), image).unwrap();
        for (recipe_at_size, digest) in recipes.as_object().unwrap() {
            let (recipe, size) = recipe_at_size.split_once('@').unwrap();
            let size: usize = size.parse().unwrap();
            let pre = Preprocessor {
                conventions: Conventions { recipe: recipe.parse().unwrap(), color: ColorOrder::Rgb, range: ValueRange::Byte, mean_bgr: None },
                layout: Layout::Nhwc,
                width: size,
                height: size,
            };
            let mut tensor = vec![0f32; pre.tensor_len()];
            pre.prepare(&frame, &mut tensor);
            let bytes: Vec<u8> = tensor.iter().map(|v| *v as u8).collect();
            let got = sha1_smol::Sha1::from(&bytes).digest().to_string();
            assert_eq!(&got, digest.as_str().unwrap(), "{image} {recipe_at_size}: pixels differ from Pillow + OpenCV");
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} crops checked");
}
