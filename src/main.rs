//! The `voxline` command line.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use voxline::audio::{encode_mulaw, write_wav, StreamResampler, WavFormat};
use voxline::models;
use voxline::synth::{CancelToken, Engine, PiperEngine, PiperVoice, Preset, SynthOptions, SynthRequest};
use voxline::synth::piper::StreamConfig;
use voxline::text::EspeakPhonemizer;

mod bench;
mod cli;

use cli::serve::ServeArgs;

#[derive(Parser)]
#[command(name = "voxline", version, about = "A media server for voice agents: streaming neural speech for calls")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Speak text into a WAV file (or raw PCMU with --mulaw and -o -).
    Say(SayArgs),
    /// Fetch the embedded default voice (en_US-joe-medium) into the models folder.
    FetchVoice {
        #[command(flatten)]
        models: ModelsArgs,
    },
    /// Download a Chatterbox model repository from the Hugging Face hub into its cache
    /// (done on first use otherwise); prints the directory.
    FetchModel(FetchModelArgs),
    /// List the voices in the models folder.
    Voices {
        #[command(flatten)]
        models: ModelsArgs,
    },
    /// Measure real-time factor and time to first chunk (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Answer SIP calls and speak into them (SIP/UDP, RTP PCMU, HTTP API).
    Serve(Box<ServeArgs>),
    /// Configuration files for `serve`.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check FILE and print the configuration `serve --config FILE` would run
    /// with (environment variables applied, secrets masked); exit 1 naming
    /// each unknown key or bad value and its line.
    Check { file: PathBuf },
}

#[derive(Args, Clone)]
pub struct ModelsArgs {
    /// Folder holding Piper voices (NAME.onnx + NAME.onnx.json).
    #[arg(long, env = "VOXLINE_MODELS")]
    pub models_dir: Option<PathBuf>,
}

impl ModelsArgs {
    pub fn dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(models::default_models_dir)
    }
}

/// Where a Chatterbox model comes from when no --model-dir is given.
#[derive(Args, Clone)]
pub struct HubArgs {
    /// Chatterbox: the Hugging Face repository to use when --model-dir is not given
    /// (default: the engine's own, ResembleAI/chatterbox-turbo or ResembleAI/chatterbox-nano).
    /// Downloaded once into the hub cache (HF_HOME, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE apply).
    #[arg(long, env = "VOXLINE_MODEL_REPO")]
    pub model_repo: Option<String>,
    /// Chatterbox: the repository's branch, tag or commit.
    #[arg(long, env = "VOXLINE_MODEL_REVISION", default_value = "main")]
    pub model_revision: String,
}

impl HubArgs {
    /// The model repository in the hub cache, downloaded with progress if needed.
    fn fetch(&self, variant: voxline::synth::chatterbox::Variant) -> Result<PathBuf> {
        use voxline::hub::{Hub, StderrProgress};
        let hub = Hub::from_env();
        let repo = self.model_repo.as_deref().unwrap_or(variant.repo_id());
        let dir = voxline::synth::chatterbox::model::fetch(
            &hub,
            variant,
            Some(repo),
            &self.model_revision,
            &mut StderrProgress::new(repo),
        )?;
        eprintln!("hub: {repo} ({}) is at {}", self.model_revision, dir.display());
        Ok(dir)
    }
}

#[derive(Args)]
struct FetchModelArgs {
    /// chatterbox-turbo or chatterbox-nano.
    #[arg(default_value = "chatterbox-turbo")]
    engine: String,
    #[command(flatten)]
    hub: HubArgs,
}

fn chatterbox_variant(engine: &str) -> Result<voxline::synth::chatterbox::Variant> {
    if engine == "piper" {
        bail!("Piper's default voice comes with `voxline fetch-voice`; fetch-model is for chatterbox-turbo and chatterbox-nano");
    }
    engine.parse().map_err(|_| anyhow::anyhow!("unknown engine `{engine}`: piper, chatterbox-turbo or chatterbox-nano"))
}

#[derive(Args, Clone)]
pub struct VoiceArgs {
    /// A voice name in the models folder, or a path to a Piper `.onnx`. Default: en_US-joe-medium.
    #[arg(long)]
    pub voice: Option<String>,
    #[command(flatten)]
    pub models: ModelsArgs,
    /// Speaker of a multi-speaker voice (number or name).
    #[arg(long)]
    pub speaker: Option<String>,
    /// Prior noise (expressiveness); the voice's default when omitted.
    #[arg(long)]
    pub noise_scale: Option<f32>,
    /// Duration multiplier: above 1 speaks slower.
    #[arg(long)]
    pub length_scale: Option<f32>,
    /// Duration noise (rhythm variation).
    #[arg(long)]
    pub noise_w: Option<f32>,
    /// Seed for reproducible output.
    #[arg(long)]
    pub seed: Option<u64>,
    /// realtime (first audio soonest), balanced (default) or fidelity (each sentence decoded whole).
    #[arg(long, value_parser = parse_preset)]
    pub preset: Option<Preset>,
    /// Where the model runs: auto (a CUDA GPU when built with the `cuda` feature and one is present), cpu, or cuda[:N].
    #[arg(long, env = "VOXLINE_DEVICE", default_value = "auto")]
    pub device: String,
    /// Threads for one stream's convolutions; 0 = every core.
    #[arg(long, env = "VOXLINE_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// The synthesizer: piper (the voices of the models folder), chatterbox-turbo or chatterbox-nano.
    #[arg(long, env = "VOXLINE_ENGINE", default_value = "piper")]
    pub engine: String,
    /// Chatterbox: a local copy of the model repository (ResembleAI/chatterbox-turbo or
    /// ResembleAI/chatterbox-nano: t3_*_v1.safetensors, s3gen_meanflow.safetensors, conds.pt,
    /// vocab.json, merges.txt, added_tokens.json). Without it the repository comes from the hub.
    #[arg(long, env = "VOXLINE_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    #[command(flatten)]
    pub hub: HubArgs,
    /// Chatterbox: T3's weights and activations, f32 (what the parity tests prove), bf16 or f16
    /// (half the memory traffic per token on a GPU; not yet measured against f32 there).
    #[arg(long, env = "VOXLINE_DTYPE", default_value = "f32", value_parser = parse_dtype)]
    pub dtype: candle_core::DType,
}

fn parse_dtype(s: &str) -> Result<candle_core::DType, String> {
    match s {
        "f32" => Ok(candle_core::DType::F32),
        "bf16" => Ok(candle_core::DType::BF16),
        "f16" => Ok(candle_core::DType::F16),
        other => Err(format!("unknown dtype `{other}`: f32, bf16 or f16")),
    }
}

impl VoiceArgs {
    pub fn options(&self) -> SynthOptions {
        SynthOptions {
            speaker: self.speaker.clone(),
            noise_scale: self.noise_scale,
            length_scale: self.length_scale,
            noise_w: self.noise_w,
            seed: self.seed,
            preset: self.preset,
        }
    }

    /// Loads the voice and its phonemizer.
    pub fn engine(&self) -> Result<PiperEngine> {
        voxline::synth::piper::vits::set_threads(self.threads);
        let path = models::resolve_voice(self.voice.as_deref(), &self.models.dir())?;
        let t0 = Instant::now();
        let voice = PiperVoice::load(&path, &device(&self.device)?)?;
        tracing::debug!(voice = %voice.name, ms = t0.elapsed().as_millis() as u64, "voice loaded");
        let phonemizer = Arc::new(EspeakPhonemizer::new()?);
        Ok(PiperEngine::new(voice, phonemizer, StreamConfig::default())?)
    }

    /// The engine `--engine` names.
    pub fn any_engine(&self) -> Result<Arc<dyn Engine>> {
        use voxline::synth::chatterbox::{model, EngineConfig};
        if self.engine == "piper" {
            return Ok(Arc::new(self.engine()?));
        }
        let variant = chatterbox_variant(&self.engine)?;
        let dir = match &self.model_dir {
            Some(dir) => dir.clone(),
            None => self.hub.fetch(variant)?,
        };
        let device = device(&self.device)?;
        let t0 = Instant::now();
        let config = EngineConfig { dtype: self.dtype, ..EngineConfig::default() };
        let engine = model::load_dir(&dir, variant, &device, config, Default::default())
            .with_context(|| format!("loading {} from {}", self.engine, dir.display()))?;
        tracing::debug!(engine = %self.engine, ms = t0.elapsed().as_millis() as u64, "model loaded");
        Ok(Arc::new(engine))
    }

    /// The other voices of the models folder, loaded when a call first asks for one.
    pub fn catalog(&self, default: &PiperEngine) -> Result<voxline::speech::VoiceCatalog> {
        let dir = self.models.dir();
        let device = device(&self.device)?;
        let phonemizer = default.phonemizer();
        let list_dir = dir.clone();
        Ok(voxline::speech::VoiceCatalog {
            names: Box::new(move || models::list_voices(&list_dir).into_iter().map(|(name, _)| name).collect()),
            load: Box::new(move |name| {
                let voice = PiperVoice::load(&dir.join(format!("{name}.onnx")), &device)?;
                Ok(Arc::new(PiperEngine::new(voice, phonemizer.clone(), StreamConfig::default())?))
            }),
        })
    }
}

fn parse_preset(name: &str) -> Result<Preset, String> {
    Preset::from_name(name)
}

/// `auto`, `cpu`, `cuda` or `cuda:N`.
fn device(spec: &str) -> Result<candle_core::Device> {
    use candle_core::Device;
    let cuda = |n: usize| Device::new_cuda(n).with_context(|| format!("no usable CUDA device {n} (is this build made with --features cuda?)"));
    match spec {
        "auto" => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => cuda(n),
            None => bail!("unknown device `{other}`: use auto, cpu, cuda or cuda:N"),
        },
    }
}

#[derive(Args)]
struct SayArgs {
    /// Text to speak; read from standard input when omitted.
    text: Vec<String>,
    /// Output file; `-` writes to standard output.
    #[arg(short, long, default_value = "out.wav")]
    output: PathBuf,
    /// Output sample rate (resampled with an anti-aliasing filter); the voice's own rate when omitted.
    #[arg(long)]
    rate: Option<u32>,
    /// G.711 mu-law instead of 16-bit PCM (a mu-law WAV, or raw PCMU bytes with `-o -` and --raw).
    #[arg(long)]
    mulaw: bool,
    /// Write raw samples (PCM16 little-endian, or PCMU bytes with --mulaw) without a WAV header.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    voice: VoiceArgs,
}

fn main() {
    // Before any thread starts: decoder windows reuse freed buffers instead
    // of faulting fresh pages in (see the module docs).
    voxline::synth::heap::keep_freed_buffers();
    // candle's own CPU ops split even small tensors across threads, which costs
    // more than it gains on this model (see BENCHMARKS.md): they run on the
    // calling thread, and the convolutions use `--threads`.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("VOXLINE_LOG").unwrap_or_else(|_| "warn,voxline::cdr=info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Say(args) => say(args),
        Command::FetchVoice { models } => {
            models::ensure_default_voice(&models.dir()).map(|p| eprintln!("voice: {}", p.display())).map_err(Into::into)
        }
        Command::FetchModel(args) => chatterbox_variant(&args.engine).and_then(|v| args.hub.fetch(v)).map(|dir| println!("{}", dir.display())),
        Command::Voices { models } => {
            let dir = models.dir();
            let voices = models::list_voices(&dir);
            if voices.is_empty() {
                println!("no voices in {} (run `voxline fetch-voice`)", dir.display());
            }
            for (name, path) in voices {
                println!("{name}\t{}", path.display());
            }
            Ok(())
        }
        Command::Bench(args) => bench::run(args),
        // Parsed again with the configuration file under the flags.
        Command::Serve(_) => cli::Layers::read(std::env::args_os().skip(1)).and_then(|l| l.serve_args()).and_then(cli::serve::run),
        Command::Config { command: ConfigCommand::Check { file } } => {
            let argv = ["serve".into(), "--config".into(), file.into_os_string()];
            cli::Layers::read(argv).map(|layers| print!("{}", cli::config_check::render(&layers)))
        }
    };
    if let Err(e) = result {
        eprintln!("voxline: error: {e:#}");
        std::process::exit(1);
    }
}

fn say(args: SayArgs) -> Result<()> {
    let text = if args.text.is_empty() {
        if std::io::stdin().is_terminal() {
            bail!("no text: give it as arguments or on standard input");
        }
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
        s
    } else {
        args.text.join(" ")
    };
    let engine = args.voice.any_engine()?;
    let voice_rate = engine.info().sample_rate;
    let out_rate = args.rate.unwrap_or(voice_rate);
    // Phone audio (8 kHz mu-law) is made by the calls' own adapter, so `say`
    // renders exactly what a call plays; any other format is resampled here.
    let phone = args.mulaw && out_rate == voxline::media::RATE;
    let mut resampler = StreamResampler::new(voice_rate, out_rate)?;
    let mut pcmu = voxline::speech::PcmuStream::new(voice_rate)?;

    let t0 = Instant::now();
    let request = SynthRequest { text, options: args.voice.options() };
    let mut stream = engine.start(request, CancelToken::new())?;
    let mut samples = Vec::new();
    let mut phone_bytes = Vec::new();
    let mut first_chunk = None;
    // Raw audio to standard output streams as it is synthesized
    // (`voxline say ... -o - --raw | aplay -f S16_LE -r 22050`).
    let streaming = args.raw && args.output == Path::new("-");
    let mut written = 0usize;
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = stream.next_chunk()? {
        first_chunk.get_or_insert_with(|| t0.elapsed());
        let bytes = if phone {
            let converted = pcmu.convert(&chunk).pcmu;
            phone_bytes.extend_from_slice(&converted);
            converted
        } else {
            resampler.process(&chunk.samples, &mut samples);
            let bytes = raw_bytes(&samples[written..], args.mulaw);
            written = samples.len();
            bytes
        };
        if streaming {
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
    }
    if phone {
        samples = voxline::audio::decode_mulaw(&phone_bytes);
    } else {
        resampler.flush(&mut samples);
        if streaming {
            stdout.write_all(&raw_bytes(&samples[written..], args.mulaw))?;
            stdout.flush()?;
        }
    }
    let elapsed = t0.elapsed();
    if phone && args.raw && !streaming {
        write_bytes(&args.output, &phone_bytes)?;
    } else if !streaming {
        write_output(&args.output, &samples, out_rate, args.mulaw, args.raw)?;
    }
    let audio_s = samples.len() as f64 / out_rate as f64;
    eprintln!(
        "voxline: {:.2} s of audio at {} Hz{} -> {} (first chunk {} ms, real-time factor {:.3})",
        audio_s,
        out_rate,
        if args.mulaw { " mu-law" } else { "" },
        if args.output == Path::new("-") { "stdout".into() } else { args.output.display().to_string() },
        first_chunk.unwrap_or_default().as_millis(),
        elapsed.as_secs_f64() / audio_s.max(1e-9),
    );
    Ok(())
}

/// PCMU bytes, or PCM16 little-endian.
fn raw_bytes(samples: &[f32], mulaw: bool) -> Vec<u8> {
    if mulaw {
        encode_mulaw(samples)
    } else {
        samples.iter().flat_map(|&s| voxline::audio::sample_to_i16(s).to_le_bytes()).collect()
    }
}

fn write_output(path: &Path, samples: &[f32], rate: u32, mulaw: bool, raw: bool) -> Result<()> {
    let format = if mulaw { WavFormat::MuLaw } else { WavFormat::Pcm16 };
    let bytes: Vec<u8> = if raw {
        raw_bytes(samples, mulaw)
    } else {
        let mut buf = Vec::new();
        write_wav(&mut buf, samples, rate, format)?;
        buf
    };
    write_bytes(path, &bytes)
}

/// `bytes` to the file, or to standard output for `-`.
fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
    } else {
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

