use pond_core::{Ring, RingTensor, Z64};
use pond_protocol::*;
use std::time::Instant;
fn main() {
    let n = 20000;
    let out = run_local(LocalConfig::seeded(1), |s| {
        let x = <Z64 as Ring>::Tensor::zeros(&[1]);
        let t = Instant::now();
        if s.role().is_server() {
            for _ in 0..n {
                let tag = s.next_tag();
                s.exchange_with_peer(tag, &x)?;
            }
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
    })
    .unwrap();
    println!("us per exchange round: {:?}", out);
}
