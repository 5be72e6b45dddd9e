use pond_layers::ReluMode;
use pond_train::mnist::{self, infer::*, Net};
fn main() {
    let m = mnist::load(&mnist::default_data_dir()).unwrap();
    let a: Vec<String> = std::env::args().collect();
    let ring = match a[2].as_str() { "z64" => RingChoice::Z64, "z128" => RingChoice::Z128, _ => RingChoice::Int100 };
    let cfg = InferConfig { net: Net::parse(&a[1]).unwrap(), ring, relu: if a[3] == "exact" { ReluMode::Exact } else { ReluMode::Polynomial },
        batch: a[4].parse().unwrap(), limit: Some(a[5].parse().unwrap()), model_dir: "models".into(), seed: 1, progress: false };
    println!("{}", serde_json::to_string(&run(&cfg, &m).unwrap()).unwrap());
}
