use pond_core::{FixedPoint, Z64};
use pond_layers::{Activation, AnyLayer, Backend, PrivateBackend, Sequential};
use pond_protocol::{run_local, LocalConfig, Role};
use pond_train::mnist::{self, infer::load_model, train::as_input, Net};
fn main() {
    let m = mnist::load(&mnist::default_data_dir()).unwrap();
    let batch: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let (spec, w) = load_model(Net::A, std::path::Path::new("models")).unwrap();
    let imgs = m.test.features.slice(ndarray::s![..batch, ..]).to_owned();
    let x = as_input(&spec, &imgs);
    let out = run_local(LocalConfig::seeded(1), |s| {
        let role = s.role();
        let mut b = PrivateBackend::<Z64>::new(s, FixedPoint::default_for_ring());
        let mut model = Sequential::input(&mut b, &spec, Role::Server0, (role == Role::Server0).then_some(&w))?;
        for l in &mut model.layers { if let AnyLayer::Dense(d) = l { d.prepare_weight(&mut b)?; } }
        let t = std::time::Instant::now();
        for _ in 0..20 {
            let xi = b.input(Role::Cp, (role == Role::Cp).then_some(&x), x.shape())?;
            let (z, _) = model.forward(&mut b, Activation::Value(xi))?;
            b.output(&z, Role::Cp)?;
        }
        let el = t.elapsed().as_secs_f64() * 1e3 / 20.0;
        let stats: Vec<String> = b.session().stats().iter().map(|(k, v)| format!("{k}: {} calls {:.2} ms", v.calls, v.time.as_secs_f64() * 1e3 / 20.0)).collect();
        Ok((el, stats))
    }).unwrap();
    for (i, o) in out.iter().enumerate() { println!("party {i}: {:.3} ms/batch; {:?}", o.0, o.1); }
}
