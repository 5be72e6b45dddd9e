//! `pond keygen`, `pond party` and `pond client`: the three parties and the client as separate
//! processes (on separate hosts) over QUIC with mutual TLS.
//!
//! A party builds its [`QuicTransport`] from `parties.toml`, opens a [`Session`] and serves the
//! client's requests with the job's program ([`pond_net::serve`]): the same program that
//! `pond local` and the tests run on three threads, so with the same seeds the results are
//! bit-identical. On an error a party tells its peers (an abort notice) and the client, and
//! exits non-zero with an error naming the peer concerned.

use super::train::{LogregData, LogregSettings};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use ndarray::{Array2, ArrayD};
use pond_core::{FixedPoint, Ring, RingTensor, Z64};
use pond_layers::{ModelSpec, ReluMode, Weights};
use pond_net::serve::{sigmoid_program, LinkRequests};
use pond_net::{
    generate_certificates, reconstruct, serve, serve_local, ClientLink, ClientListener, PartiesConfig, QuicTransport,
    RequestSource, ServeError, Splitter, WireTensor,
};
use pond_protocol::{KeySetup, LocalConfig, ProtocolError, Role, Session};
use pond_train::experiments::logreg::{prepare_data, train_private_party, DataSource, PrivateOutcome};
use pond_train::experiments::{DATA_OWNER, MODEL_OWNER};
use pond_train::mnist::infer::serve_infer;
use pond_train::mnist::nets::with_relu;
use pond_train::mnist::train::{argmax, as_input};
use pond_train::mnist::Net;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `pond keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory for the CA and the certificates (created if needed; existing files are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Party names, one certificate (and key) each, naming the party.
    #[arg(long, value_delimiter = ',', default_value = "server0,server1,cp,client")]
    parties: Vec<String>,
    /// Ports of the loopback `parties.toml` template: server0, server1, cp, then the client
    /// links of server0 and server1.
    #[arg(long, value_delimiter = ',', default_value = "7000,7001,7002,7100,7101")]
    ports: Vec<u16>,
    /// Do not write `DIR/parties.toml`.
    #[arg(long)]
    no_config: bool,
}

/// Arguments of `pond party`.
#[derive(Debug, Args)]
pub struct PartyArgs {
    /// The parties file (addresses, certificates, CA, timeouts).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Which party this process is.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Derive the pairwise keys from this seed (reproducible runs and tests only; all three
    /// parties must pass the same). Default: fresh keys from the operating system.
    #[arg(long)]
    seed: Option<u64>,
    /// Session id, the same on all three parties (default: the seed, or 0).
    #[arg(long)]
    session: Option<u64>,
    /// Print a JSON summary (requests, time, protocol and wire bytes) on stdout at the end.
    #[arg(long)]
    json: bool,
    /// The program to run.
    #[command(subcommand)]
    job: PartyJob,
}

#[derive(Debug, Clone, Subcommand)]
enum PartyJob {
    /// Demo: the polynomial sigmoid of the client's values (Z64 fixed point), revealed to the
    /// client only.
    Sigmoid,
    /// Private MNIST inference: server0 secret-shares the model's weights once, then each client
    /// request (a batch of images, shared by the client) is classified; the logits go back to the
    /// client as shares.
    Infer(InferJob),
    /// Private logistic-regression training, the program of `pond train logreg`: server0 (the
    /// data owner) reads the data and secret-shares it, server1 (the model owner) receives the
    /// trained weights; cp learns only the data's shape. No client is involved.
    TrainLogreg(TrainLogregJob),
}

/// The training run of `pond party train-logreg`. All three parties must pass the same
/// settings (the data owner checks); the split and the initial weights use `--seed` (0 without).
#[derive(Debug, Clone, Args)]
pub struct TrainLogregJob {
    /// The data: server0 (the data owner) only.
    #[command(flatten)]
    data: LogregData,
    #[command(flatten)]
    settings: LogregSettings,
    /// server1 (the model owner) only: write the trained model to STEM.json and
    /// STEM.safetensors.
    #[arg(long, value_name = "STEM")]
    model_out: Option<PathBuf>,
}

/// The model of `pond party infer`.
#[derive(Debug, Clone, Args)]
pub struct InferJob {
    /// Network A, B, C or D.
    #[arg(long, default_value = "A")]
    net: String,
    /// Directory of the model files (`mnist-a.json` on every party, `mnist-a.safetensors` on
    /// server0, the model owner). Default: the repository's `models`.
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// ReLU: exact (secure comparison) or poly (polynomial approximation).
    #[arg(long, default_value = "exact")]
    relu: String,
}

/// Arguments of `pond client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The parties file (with a `[client]` entry and the servers' `client_address`).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Split the inputs with shares from this seed (reproducible runs and tests only).
    /// Default: fresh randomness from the operating system.
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object per request on stdout.
    #[arg(long)]
    json: bool,
    /// What to ask the servers.
    #[command(subcommand)]
    job: ClientJob,
}

#[derive(Debug, Clone, Subcommand)]
enum ClientJob {
    /// Classify MNIST images privately: the servers run `pond party infer`.
    Infer {
        /// Network A, B, C or D (its input shape; must match the parties').
        #[arg(long, default_value = "A")]
        net: String,
        /// An image: 784 numbers (28x28, row-major; in [0, 1], or 0..255), separated by
        /// whitespace or commas.
        #[arg(long, value_name = "FILE", conflicts_with = "mnist_index")]
        image: Option<PathBuf>,
        /// Test-set image N (and the next batch-1 images) from the MNIST directory.
        #[arg(long, value_name = "N")]
        mnist_index: Option<usize>,
        /// Images per request (with --mnist-index).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Send the request this many times, back to back, in one session.
        #[arg(long, default_value_t = 1)]
        repeat: u64,
        /// MNIST directory. Default: the repository's `data/mnist`.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Demo: the sigmoid of `--values`, computed by the servers on shares.
    Sigmoid {
        /// The inputs, comma-separated.
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true, required = true)]
        values: Vec<f64>,
        /// Send the same request this many times, back to back, in one session.
        #[arg(long, default_value_t = 1)]
        repeat: u64,
    },
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name).ok_or_else(|| format!("unknown role `{name}` (expected server0, server1 or cp)"))
}

/// Runs `pond keygen`.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let written = generate_certificates(&args.out, &args.parties)?;
    println!("CA: {} (keep {} offline)", written.ca_cert.display(), written.ca_key.display());
    for party in &written.parties {
        println!("{}: {} {}", party.name, party.cert.display(), party.key.display());
    }
    let has = |name: &str| args.parties.iter().any(|p| p == name);
    if args.no_config || !(has("server0") && has("server1") && has("cp")) {
        return Ok(());
    }
    let ports = &args.ports;
    if ports.len() != 3 && ports.len() != 5 {
        bail!("--ports takes 3 ports (server0,server1,cp) or 5 (plus the client links of server0,server1)");
    }
    let mut config = PartiesConfig::local(&args.out, [ports[0], ports[1], ports[2]]);
    if has("client") && ports.len() == 5 {
        config = config.with_local_client(&args.out, [ports[3], ports[4]]);
    }
    let path = args.out.join("parties.toml");
    config.save(&path)?;
    println!("parties file (loopback addresses; edit them for real hosts): {}", path.display());
    Ok(())
}

/// What `pond party --json` prints at the end.
#[derive(Debug, Serialize)]
struct PartySummary {
    role: Role,
    /// Client requests served (serving jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<u64>,
    /// Epochs trained (training jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    epochs: Option<usize>,
    /// Milliseconds in the program (all requests, or all epochs).
    program_ms: f64,
    /// Milliseconds from the session being up to the end.
    session_ms: f64,
    /// Payload bytes this party sent to its peers (the protocol's count).
    protocol_bytes: u64,
    /// UDP bytes this party sent on its party links (quinn's count).
    wire_bytes: u64,
    /// Communication rounds.
    rounds: u64,
    /// UDP datagrams sent on the party links.
    datagrams: u64,
    /// QUIC packets declared lost (retransmitted) on the party links.
    lost_packets: u64,
    /// Path MTU towards each party.
    mtu: [u16; 3],
    /// UDP bytes sent and received on the client link (servers).
    client_wire_bytes: Option<(u64, u64)>,
}

/// Runs `pond party`.
pub fn party(args: PartyArgs) -> anyhow::Result<()> {
    let role = args.role;
    let config = PartiesConfig::load(&args.config)?;
    // The data owner reads its data before linking, so that a bad file is reported first.
    let training = match &args.job {
        PartyJob::TrainLogreg(job) => Some(training_data(role, job, args.seed.unwrap_or(0))?),
        _ => None,
    };
    // Bind the client link first, so that a busy port is reported before anything else.
    let listener =
        if role.is_server() && training.is_none() { Some(ClientListener::bind(&config, role)?) } else { None };
    let transport = QuicTransport::connect(&config, role)?;
    let wire = transport.wire_stats();
    let keys = args.seed.map_or(KeySetup::Os, KeySetup::Seed);
    let session_id = args.session.or(args.seed).unwrap_or(0);
    let mut session = Session::new(Box::new(transport), session_id, keys, config.receive_timeout)
        .map_err(|e| anyhow!("{role}: session setup failed: {e}"))?;
    eprintln!("{role}: linked with its peers");
    let start = Instant::now();

    let done = match (&args.job, training) {
        (PartyJob::TrainLogreg(job), Some((cfg, data))) => train_logreg(&mut session, job, &cfg, data.as_ref())?,
        (job, _) => serve_client(&mut session, listener, job, &config)?,
    };
    let traffic = session.traffic();
    let summary = PartySummary {
        role,
        requests: done.requests,
        epochs: done.epochs,
        program_ms: done.program_time.as_secs_f64() * 1e3,
        session_ms: start.elapsed().as_secs_f64() * 1e3,
        protocol_bytes: traffic.total_sent(),
        wire_bytes: wire.bytes_sent().iter().sum(),
        rounds: traffic.rounds,
        datagrams: wire.datagrams_sent().iter().sum(),
        lost_packets: wire.lost_packets().iter().sum(),
        mtu: wire.mtu(),
        client_wire_bytes: done.client_wire_bytes,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary).context("summary as JSON")?);
    }
    eprintln!(
        "{role}: {} in {:.1} ms; sent {} protocol bytes, {} wire bytes",
        match (done.requests, done.epochs) {
            (Some(requests), _) => format!("served {requests} requests"),
            (None, epochs) => format!("trained {} epochs", epochs.unwrap_or(0)),
        },
        summary.session_ms,
        summary.protocol_bytes,
        summary.wire_bytes
    );
    Ok(())
}

/// What a party's job did, for its summary.
struct JobDone {
    requests: Option<u64>,
    epochs: Option<usize>,
    program_time: Duration,
    client_wire_bytes: Option<(u64, u64)>,
}

/// Accepts the client (servers) and serves its requests with the job's program. On an error,
/// tells the peers and the client before returning it.
fn serve_client(
    session: &mut Session,
    listener: Option<ClientListener>,
    job: &PartyJob,
    config: &PartiesConfig,
) -> anyhow::Result<JobDone> {
    let role = session.role();
    let mut source = match listener {
        None => None,
        Some(mut listener) => match listener.accept(config.receive_timeout) {
            Ok(connection) => Some(LinkRequests::new(connection, config.receive_timeout)),
            Err(e) => {
                let e = ServeError::Client(e);
                e.abort(session);
                bail!("{role}: {e}");
            }
        },
    };
    let source_dyn = source.as_mut().map(|s| s as &mut dyn RequestSource);
    let outcome = match job {
        PartyJob::Sigmoid => serve(session, source_dyn, sigmoid_program),
        PartyJob::Infer(job) => match infer_model(role, job) {
            Ok((spec, weights)) => serve_infer(session, source_dyn, &spec, weights.as_ref()),
            Err(e) => {
                Err(ProtocolError::Usage { op: "infer", reason: format!("{role}: cannot load the model: {e:#}") }
                    .into())
            }
        },
        PartyJob::TrainLogreg(_) => {
            Err(ProtocolError::Usage { op: "party", reason: "training serves no client".into() }.into())
        }
    };
    match outcome {
        Ok(report) => Ok(JobDone {
            requests: Some(report.requests),
            epochs: None,
            program_time: report.program_time,
            client_wire_bytes: source.as_ref().map(|s| s.connection().wire_bytes()),
        }),
        Err(e) => {
            e.abort(session);
            if let Some(source) = source.as_mut() {
                source.fail(&format!("{role}: {e}"));
            }
            bail!("{role}: {e}");
        }
    }
}

/// The training configuration of `job` on `role`, and on the data owner its training set
/// (split and standardised as `pond train logreg` does).
fn training_data(
    role: Role,
    job: &TrainLogregJob,
    seed: u64,
) -> anyhow::Result<(pond_train::experiments::logreg::LogregConfig, Option<pond_train::data::Dataset>)> {
    let source = job.data.source()?;
    if role == MODEL_OWNER && job.model_out.is_none() {
        bail!("{role} is the model owner: give --model-out STEM for the trained weights");
    }
    if role != MODEL_OWNER && job.model_out.is_some() {
        bail!("--model-out: only the model owner {MODEL_OWNER} receives the trained weights");
    }
    match source {
        Some(source) if role == DATA_OWNER => {
            let cfg = job.settings.config(source, seed, true);
            let (train, _test) = prepare_data(&cfg.data, seed)?;
            Ok((cfg, Some(train)))
        }
        None if role == DATA_OWNER => bail!("{role} is the data owner: give --data FILE.csv or --synthetic RxF"),
        Some(_) => bail!("--data/--synthetic: only the data owner {DATA_OWNER} reads the data"),
        None => Ok((job.settings.config(DataSource::OtherParty, seed, false), None)),
    }
}

/// `pond party train-logreg`: this party's part of private training; the model owner writes
/// the trained model. On an error, tells the peers before returning it.
fn train_logreg(
    session: &mut Session,
    job: &TrainLogregJob,
    cfg: &pond_train::experiments::logreg::LogregConfig,
    data: Option<&pond_train::data::Dataset>,
) -> anyhow::Result<JobDone> {
    let role = session.role();
    let PrivateOutcome { weights, log, shape, .. } = match train_private_party(session, cfg, data) {
        Ok(outcome) => outcome,
        Err(e) => {
            session.abort(&e);
            bail!("{role}: {e}");
        }
    };
    if let (Some(weights), Some(stem)) = (weights, &job.model_out) {
        let spec = ModelSpec::logistic_regression(shape[1]);
        pond_layers::io::save(&spec, &weights, &stem.with_extension("json"), &stem.with_extension("safetensors"))?;
        eprintln!("{role}: trained model written to {}.{{json,safetensors}}", stem.display());
    }
    Ok(JobDone {
        requests: None,
        epochs: Some(log.times.len()),
        program_time: log.times.iter().sum(),
        client_wire_bytes: None,
    })
}

/// One line of `pond client --json`.
#[derive(Debug, Serialize)]
struct ClientLine {
    request: u64,
    /// The reconstructed output in the ring's wire encoding, as hex (for bit-exact comparisons).
    raw_hex: String,
    /// The output decoded from fixed point.
    values: Vec<f64>,
    /// Milliseconds from sending the shares to having both servers' answers.
    ms: f64,
}

/// The hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `pond client`.
pub fn client(args: ClientArgs) -> anyhow::Result<()> {
    let config = PartiesConfig::load(&args.config)?;
    let splitter = args.seed.map_or_else(Splitter::from_os, Splitter::seeded);
    let mut link = ClientLink::connect(&config)?;
    let outcome = match &args.job {
        ClientJob::Sigmoid { values, repeat } => sigmoid_requests(&mut link, &splitter, values, *repeat, args.json),
        ClientJob::Infer { net, image, mnist_index, batch, repeat, data_dir } => {
            let (images, labels) = client_images(image.as_deref(), *mnist_index, *batch, data_dir.as_deref())?;
            infer_requests(&mut link, &splitter, net, &images, labels.as_deref(), *repeat, args.json)
        }
    };
    match outcome {
        Ok(()) => {
            link.finish()?;
            Ok(())
        }
        Err(e) => {
            link.fail(&format!("client: {e:#}"));
            Err(e)
        }
    }
}

/// Sends `x`, split afresh, as the next request and reconstructs the (first) output. Returns
/// the request's index, the output and the milliseconds until both servers had answered.
fn request_one(
    link: &mut ClientLink,
    splitter: &Splitter,
    x: &<Z64 as Ring>::Tensor,
) -> anyhow::Result<(u64, <Z64 as Ring>::Tensor, f64)> {
    let index = link.next_index();
    let shares = splitter.split_all(std::slice::from_ref(x), index)?;
    let start = Instant::now();
    let outputs = link.request(shares)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let (Some(y0), Some(y1)) = (outputs[0].first(), outputs[1].first()) else {
        bail!("request {index}: the servers sent no output");
    };
    let y = reconstruct(y0, y1).map_err(|e| anyhow!("request {index}: {e}"))?;
    Ok((index, y, ms))
}

fn sigmoid_requests(
    link: &mut ClientLink,
    splitter: &Splitter,
    values: &[f64],
    repeat: u64,
    json: bool,
) -> anyhow::Result<()> {
    let fp = FixedPoint::<Z64>::default_for_ring();
    let x = fp.encode(ArrayD::from_shape_vec(vec![values.len()], values.to_vec())?.view())?;
    for _ in 0..repeat {
        let (index, y, ms) = request_one(link, splitter, &x)?;
        let line = ClientLine {
            request: index,
            raw_hex: hex(&y.to_bytes()),
            values: fp.decode(&y).iter().copied().collect(),
            ms,
        };
        if json {
            println!("{}", serde_json::to_string(&line)?);
        } else if index + 1 == repeat {
            let shown: Vec<String> = line.values.iter().map(|v| format!("{v:.4}")).collect();
            println!("sigmoid: [{}] ({repeat} requests, last {ms:.2} ms)", shown.join(", "));
        }
    }
    Ok(())
}

/// The network named `name`.
fn parse_net(name: &str) -> anyhow::Result<Net> {
    Net::parse(name).ok_or_else(|| anyhow!("unknown network `{name}` (expected A, B, C or D)"))
}

/// The architecture (every party, from the model's JSON) and the weights (server0 only).
fn infer_model(role: Role, job: &InferJob) -> anyhow::Result<(ModelSpec, Option<Weights>)> {
    let net = parse_net(&job.net)?;
    let relu = match job.relu.as_str() {
        "exact" => ReluMode::Exact,
        "poly" => ReluMode::Polynomial,
        other => bail!("unknown --relu `{other}` (expected exact or poly)"),
    };
    let dir = job.model_dir.clone().unwrap_or_else(pond_train::mnist::default_model_dir);
    let stem = pond_train::mnist::infer::model_stem(net, relu, &dir);
    let spec = pond_layers::io::load_spec(&stem.with_extension("json"))?;
    let weights = if role == Role::Server0 {
        Some(pond_layers::io::load_weights(&stem.with_extension("safetensors"))?)
    } else {
        None
    };
    Ok((with_relu(&spec, relu), weights))
}

/// The client's images (one per row, 784 values in [0, 1]) and their labels if known.
fn client_images(
    image: Option<&Path>,
    mnist_index: Option<usize>,
    batch: usize,
    data_dir: Option<&Path>,
) -> anyhow::Result<(Array2<f64>, Option<Vec<usize>>)> {
    if let Some(path) = image {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read image {}", path.display()))?;
        let values: Vec<f64> = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .map(|t| t.parse::<f64>().with_context(|| format!("{}: `{t}` is not a number", path.display())))
            .collect::<anyhow::Result<_>>()?;
        if values.len() != 784 {
            bail!("{}: {} values, expected 784 (28x28)", path.display(), values.len());
        }
        let scale = if values.iter().any(|&v| v > 1.0) { 255.0 } else { 1.0 };
        let row = Array2::from_shape_vec((1, 784), values.iter().map(|v| v / scale).collect())?;
        return Ok((row, None));
    }
    let Some(first) = mnist_index else {
        bail!("give --image FILE or --mnist-index N");
    };
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let dir = data_dir.map(Path::to_path_buf).unwrap_or_else(pond_train::mnist::default_data_dir);
    let mnist = pond_train::mnist::load(&dir)?;
    let n = mnist.test.features.nrows();
    if first >= n {
        bail!("--mnist-index {first}: the test set has {n} images");
    }
    let rows: Vec<usize> = (0..batch).map(|i| (first + i) % n).collect();
    let images = mnist.test.features.select(ndarray::Axis(0), &rows);
    let labels = rows.iter().map(|&r| mnist.test.labels[r] as usize).collect();
    Ok((images, Some(labels)))
}

/// One line of `pond client --json infer`.
#[derive(Debug, Serialize)]
struct InferLine {
    request: u64,
    raw_hex: String,
    /// The logits, one row of 10 per image.
    logits: Vec<Vec<f64>>,
    predictions: Vec<usize>,
    labels: Option<Vec<usize>>,
    ms: f64,
}

fn infer_requests(
    link: &mut ClientLink,
    splitter: &Splitter,
    net: &str,
    images: &Array2<f64>,
    labels: Option<&[usize]>,
    repeat: u64,
    json: bool,
) -> anyhow::Result<()> {
    let spec = parse_net(net)?.spec(ReluMode::Exact);
    let fp = FixedPoint::<Z64>::default_for_ring();
    let x = fp.encode(as_input(&spec, images.view()).view())?;
    for _ in 0..repeat {
        let (index, z, ms) = request_one(link, splitter, &x)?;
        let decoded = fp.decode(&z);
        let classes = decoded.shape().last().copied().unwrap_or(1).max(1);
        let logits: Vec<Vec<f64>> =
            decoded.iter().copied().collect::<Vec<_>>().chunks(classes).map(<[f64]>::to_vec).collect();
        let predictions: Vec<usize> = logits.iter().map(|row| argmax(row.iter().copied())).collect();
        let line = InferLine {
            request: index,
            raw_hex: hex(&z.to_bytes()),
            logits,
            predictions,
            labels: labels.map(<[usize]>::to_vec),
            ms,
        };
        if json {
            println!("{}", serde_json::to_string(&line)?);
        } else if index + 1 == repeat {
            let labels = line.labels.as_ref().map(|l| format!(" (labels {l:?})")).unwrap_or_default();
            println!("predictions: {:?}{labels} ({repeat} requests, last {ms:.2} ms)", line.predictions);
        }
    }
    Ok(())
}

/// One row of `pond bench net`: net A inference over QUIC with three processes on loopback,
/// against the same program on three local threads.
#[derive(Debug, Serialize)]
pub struct NetBenchRow {
    suite: &'static str,
    net: &'static str,
    batch: usize,
    /// Timed requests (after one warm-up request).
    requests: u64,
    /// Milliseconds per request at the client over QUIC (sharing, control step, protocol,
    /// answers; mean over the timed requests).
    ms: f64,
    /// server0's milliseconds per request in the program over QUIC.
    program_ms: f64,
    /// server0's milliseconds per request in the program on three local threads (same run).
    local_ms: f64,
    /// ms / local_ms.
    ratio: f64,
    /// UDP bytes sent on the party links by server0, server1, cp (quinn's counters).
    wire_bytes: [u64; 3],
    /// Payload bytes sent by server0, server1, cp (the protocol's counters).
    protocol_bytes: [u64; 3],
    /// sum(wire_bytes) / sum(protocol_bytes).
    wire_over_protocol: f64,
    /// QUIC packets declared lost on the party links (all parties).
    lost_packets: u64,
}

/// Runs `pond bench net`: for batches 1, 10 and 100, three `pond party infer` processes and an
/// in-process client over loopback, then the same requests on three local threads.
pub fn bench(quick: bool, mut emit: impl FnMut(&NetBenchRow)) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the pond executable")?;
    let mnist = pond_train::mnist::load(&pond_train::mnist::default_data_dir())?;
    let spec = Net::A.spec(ReluMode::Exact);
    let fp = FixedPoint::<Z64>::default_for_ring();
    let job = InferJob { net: "A".into(), model_dir: None, relu: "exact".into() };
    let (model_spec, model_weights) = infer_model(Role::Server0, &job)?;
    let model_weights = model_weights.ok_or_else(|| anyhow!("net A: no weights"))?;
    for batch in [1usize, 10, 100] {
        let requests: u64 = match (quick, batch) {
            (true, _) => 3,
            (false, 1) => 100,
            (false, 10) => 40,
            _ => 15,
        };
        let rows: Vec<usize> = (0..batch).collect();
        let images = mnist.test.features.select(ndarray::Axis(0), &rows);
        let x = fp.encode(as_input(&spec, images.view()).view())?;
        let splitter = Splitter::seeded(9);
        let shares: Vec<[Vec<WireTensor>; 2]> =
            (0..=requests).map(|i| splitter.split_all(std::slice::from_ref(&x), i)).collect::<Result<_, _>>()?;

        // Over QUIC: three processes.
        let dir = std::env::temp_dir().join(format!("pond-bench-net-{}-{batch}", std::process::id()));
        let ports = pond_net::free_loopback_port_set::<5>()?;
        let config = pond_net::write_local_config_with_client(&dir, ports)?;
        let config_path = dir.join("parties.toml");
        let mut children = Vec::new();
        for role in Role::ALL {
            let child = std::process::Command::new(&exe)
                .args(["party", "--config"])
                .arg(&config_path)
                .args(["--role", &role.to_string(), "--seed", "1", "--json", "infer", "--net", "A"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {role}"))?;
            children.push(KillOnDrop(child));
        }
        let mut link = ClientLink::connect(&config)?;
        let mut shares = shares.into_iter();
        let timed = (|| -> anyhow::Result<f64> {
            link.request(shares.next().ok_or_else(|| anyhow!("no warm-up request"))?)?;
            let start = Instant::now();
            for request in shares.by_ref() {
                link.request(request)?;
            }
            Ok(start.elapsed().as_secs_f64() * 1e3 / requests as f64)
        })();
        let ms = match timed {
            Ok(ms) => {
                link.finish()?;
                ms
            }
            Err(e) => {
                link.fail(&format!("bench client: {e:#}"));
                return Err(e);
            }
        };
        let mut summaries = Vec::new();
        for mut child in children {
            let output = wait_output(&mut child.0, std::time::Duration::from_secs(60))?;
            let line =
                output.lines().find(|l| l.starts_with('{')).ok_or_else(|| anyhow!("a party printed no summary"))?;
            summaries.push(serde_json::from_str::<serde_json::Value>(line)?);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let field = |i: usize, name: &str| summaries[i][name].as_u64().unwrap_or(0);
        let program_ms = summaries[0]["program_ms"].as_f64().unwrap_or(0.0) / (requests + 1) as f64;

        // The same requests on three local threads.
        let local_shares: Vec<[Vec<WireTensor>; 2]> =
            (0..=requests).map(|i| splitter.split_all(std::slice::from_ref(&x), i)).collect::<Result<_, _>>()?;
        let served = serve_local(LocalConfig::seeded(1), &local_shares, |s, source| {
            let owned = (s.role() == Role::Server0).then_some(&model_weights);
            serve_infer(s, source, &model_spec, owned)
        })?;
        let (report, _) = &served[0];
        let local_ms = report.program_time.as_secs_f64() * 1e3 / report.requests.max(1) as f64;

        let wire_bytes: [u64; 3] = std::array::from_fn(|i| field(i, "wire_bytes"));
        let protocol_bytes: [u64; 3] = std::array::from_fn(|i| field(i, "protocol_bytes"));
        emit(&NetBenchRow {
            suite: "net",
            net: "A",
            batch,
            requests,
            ms,
            program_ms,
            local_ms,
            ratio: ms / local_ms,
            wire_bytes,
            protocol_bytes,
            wire_over_protocol: wire_bytes.iter().sum::<u64>() as f64
                / protocol_bytes.iter().sum::<u64>().max(1) as f64,
            lost_packets: (0..3).map(|i| field(i, "lost_packets")).sum(),
        });
    }
    Ok(())
}

/// A child process killed and reaped if dropped before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Waits up to `limit` for `child` to exit successfully and returns its stdout.
fn wait_output(child: &mut std::process::Child, limit: std::time::Duration) -> anyhow::Result<String> {
    use std::io::Read;
    let mut stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("a party did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let text = reader.join().map_err(|_| anyhow!("stdout reader panicked"))?;
    if !status.success() {
        bail!("a party failed ({status})");
    }
    Ok(text)
}
