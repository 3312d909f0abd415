//! What the test suites share: the model to run on, loaded the way CI runs it.
use std::path::PathBuf;

use minimax::{Model, ModelOptions};

/// MINIMAX_TEST_MODEL when set (ctest sets it), else the bundled demo model.
pub fn model_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MINIMAX_TEST_MODEL") {
        return PathBuf::from(dir);
    }
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/demo");
    assert!(demo.join("config.json").exists(), "no demo model; set MINIMAX_TEST_MODEL to a model directory");
    demo
}

/// The model on the CPU backend with one thread: the test functions run in parallel on
/// machines with few cores.
pub fn load_model() -> Model {
    let mut opts = ModelOptions::new().unwrap();
    opts.backend("cpu").unwrap().threads(1).unwrap();
    Model::load(model_dir(), Some(&opts)).unwrap_or_else(|e| panic!("loading {:?}: {}", model_dir(), e))
}
