//! Trains the committed MNIST models (same as `pond train mnist --net X`).
use pond_train::mnist::{self, train::{train_and_save, TrainConfig}, Net};
fn main() {
    let m = mnist::load(&mnist::default_data_dir()).unwrap();
    for name in std::env::args().skip(1) {
        let net = Net::parse(&name).unwrap();
        let mut cfg = TrainConfig::standard(net);
        cfg.progress = false;
        let rep = train_and_save(&cfg, &m, std::path::Path::new("models")).unwrap();
        println!("{}", serde_json::to_string(&rep).unwrap());
    }
}
