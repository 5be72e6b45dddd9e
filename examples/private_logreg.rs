//! Private logistic regression on breast cancer from library calls: server0 owns the data,
//! server1 owns the model and alone receives the trained weights.
//! Run: `cargo run --release --example private_logreg`
use pond_core::{FixedPoint, Z64};
use pond_layers::{LogisticLoss, ModelSpec, PrivateBackend, Sequential};
use pond_protocol::{run_local, LocalConfig, Role};
use pond_train::experiments::logreg::{predict, prepare_data, DataSource};
use pond_train::{csv::LabelColumn, fit::*, metrics::binary_accuracy, optim::*};

fn main() -> anyhow::Result<()> {
    let csv =
        DataSource::Csv { path: "data/breast-cancer/breast_cancer.csv".into(), label: LabelColumn::parse("target") };
    let (train, test) = prepare_data(&csv, 0)?;
    let (x, y) = (train.features.clone().into_dyn(), train.label_column().into_dyn());
    let spec = ModelSpec::logistic_regression(30);
    let init = spec.init(0);
    let sgd = Sgd { lr: 0.05, momentum: 0.0, schedule: Schedule::Constant };
    let objective = Objective::Logistic(LogisticLoss::default());
    let fp = FixedPoint::<Z64>::new(20, 11)?;
    let [_, weights, _] = run_local(LocalConfig::seeded(0), |s| {
        let (data_owner, model_owner) = (s.role() == Role::Server0, s.role() == Role::Server1);
        let mut b = PrivateBackend::new(s, fp);
        let mut model = Sequential::input(&mut b, &spec, Role::Server1, model_owner.then_some(&init))?;
        let (xo, yo) = (data_owner.then_some(&x), data_owner.then_some(&y));
        let data = TrainingSet::input(&mut b, Role::Server0, xo, x.shape(), yo, y.shape(), 32)?;
        fit(&mut b, &mut model, &objective, &sgd, &data, 20)?;
        Ok(model.output(&mut b, Role::Server1)?)
    })?;
    let p = predict(&weights.expect("server1 owns the model"), &test.features)?;
    println!("private logistic regression: test accuracy {:.4}", binary_accuracy(p.view(), test.labels.view()));
    Ok(())
}
