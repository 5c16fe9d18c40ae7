//! The builder: stages, ARG/ENV scoping, one result per instruction (layer or config only) kept in
//! the cache, and the exported image with its tags.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};

use super::cache;
use super::copy::{self, Overrides, Source};
use super::ignore::Ignore;
use super::parse::{self, Args, Instruction};
use super::progress::Progress;
use super::tree::{DirTree, ImageTree, Kind, Meta, Tree};
use super::vars::{Lexer, key_values};
use crate::container::{Cancel, Output, ProcessSpec, run_cancellable};
use crate::layer::compression::Compression;
use crate::layer::pack::PackOptions;
use crate::oci::image::{Descriptor, HistoryEntry, Platform, build_manifest, config_bytes, extend_config};
use crate::oci::{Digest, Reference, media};
use crate::store::containers::MountSpec;
use crate::store::derive::oci_layer_type;
use crate::store::{ImageRecord, LayerRef, LockMode, Store, staging};

/// Args Docker defines without an ARG line, passed only by --build-arg and kept out of history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

const DEFAULT_SHELL: &[&str] = &["/bin/sh", "-c"];
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Options {
    /// The Dockerfile's name for messages (`Dockerfile`, `-`).
    pub dockerfile_name: String,
    pub dockerfile: String,
    /// The context directory.
    pub context: PathBuf,
    pub ignore: Ignore,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub network: Option<String>,
    pub labels: Vec<(String, String)>,
    pub platform: Option<Platform>,
    /// SOURCE_DATE_EPOCH: history and config times, and the clamp for file mtimes.
    pub epoch: Option<i64>,
    /// Stops the build from another thread (Ctrl-C): a running RUN is killed, no later step runs.
    pub cancel: std::sync::Arc<Cancel>,
}

struct Stage {
    index: usize,
    name: Option<String>,
    from: Instruction,
    body: Vec<Instruction>,
}

/// Where a stage stands: the result so far, a config blob and layers (no image record: only
/// the exported result becomes one).
#[derive(Clone)]
struct State {
    /// The config blob's digest, the id an image of it would have (None only for scratch before
    /// any step).
    id: Option<Digest>,
    layers: Vec<LayerRef>,
    config: Value,
    /// The stored image the stage is built on, if any: the exported image's parent.
    base: Option<Digest>,
    /// Declared ARGs and their values (None: declared without a value).
    args: BTreeMap<String, Option<String>>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

impl State {
    fn layers(&self) -> Vec<LayerRef> {
        self.layers.clone()
    }

    fn cfg(&mut self) -> &mut Map<String, Value> {
        let obj = self.config.as_object_mut().expect("configs are objects");
        obj.entry("config").or_insert_with(|| json!({}));
        obj.get_mut("config").and_then(Value::as_object_mut).expect("config.config is an object")
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.config.get("config").and_then(|c| c.get(key)).filter(|v| !v.is_null())
    }

    fn env_list(&self) -> Vec<String> {
        self.get("Env")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    fn workdir(&self) -> String {
        self.get("WorkingDir").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("/").to_string()
    }

    fn shell(&self) -> Vec<String> {
        self.get("Shell")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
    }

    fn id(&self) -> String {
        self.id.as_ref().map(|i| i.to_string()).unwrap_or_else(|| "scratch".into())
    }

    /// Args with a value, as the step sees them (cache key, RUN environment).
    fn visible_args(&self) -> Vec<(String, String)> {
        self.args.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect()
    }
}

fn scratch_config() -> Value {
    let host = Platform::host();
    let mut m = Map::new();
    m.insert("architecture".into(), host.architecture.into());
    if let Some(v) = host.variant {
        m.insert("variant".into(), v.into());
    }
    m.insert("os".into(), host.os.into());
    m.insert("config".into(), json!({}));
    m.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
    m.insert("history".into(), json!([]));
    m.into()
}

/// The platform args BuildKit defines (TARGETARCH…), for this machine.
fn platform_args(target: &Platform) -> Vec<(String, String)> {
    let host = Platform::host();
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", &host)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default()));
    }
    out
}

pub struct Builder<'a> {
    opts: &'a Options,
    progress: &'a Progress,
    lexer: Lexer,
    /// Global (before the first FROM) ARG values.
    meta_args: BTreeMap<String, Option<String>>,
    stages: Vec<Stage>,
    used_args: std::cell::RefCell<BTreeSet<String>>,
    now: i64,
}

/// What a build produced.
pub struct Built {
    pub image: Digest,
}

impl<'a> Builder<'a> {
    pub fn new(opts: &'a Options, progress: &'a Progress) -> Result<Builder<'a>> {
        let file = parse::parse(&opts.dockerfile_name, &opts.dockerfile)?;
        if let Some(s) = &file.syntax {
            progress.note(&format!(
                "note: the `# syntax={s}` directive is ignored: strata parses Dockerfiles itself"
            ));
        }
        let lexer = Lexer { escape: file.escape };
        let mut meta_args: BTreeMap<String, Option<String>> = BTreeMap::new();
        let target_platform = opts.platform.clone().unwrap_or_else(Platform::host);
        for (k, v) in platform_args(&target_platform) {
            meta_args.insert(k, Some(v));
        }
        let mut stages: Vec<Stage> = Vec::new();
        let mut used = BTreeSet::new();
        for ins in file.instructions {
            let at = |e: anyhow::Error| anyhow!("{}:{}: {e:#}", opts.dockerfile_name, ins.line);
            match (ins.keyword.as_str(), stages.last_mut()) {
                ("FROM", _) => {
                    let words = match &ins.args {
                        Args::Shell(s) => s.split_whitespace().map(str::to_string).collect::<Vec<_>>(),
                        Args::Json(_) => {
                            bail!("{}:{}: FROM takes an image, not JSON", opts.dockerfile_name, ins.line)
                        }
                    };
                    let name = match &words[..] {
                        [_] => None,
                        [_, kw, name] if kw.eq_ignore_ascii_case("as") => {
                            let n = name.to_ascii_lowercase();
                            if !n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                                || !n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                            {
                                bail!("{}:{}: invalid stage name {name:?}", opts.dockerfile_name, ins.line);
                            }
                            if stages.iter().any(|s| s.name.as_deref() == Some(n.as_str())) {
                                bail!("{}:{}: duplicate stage name {name:?}", opts.dockerfile_name, ins.line);
                            }
                            Some(n)
                        }
                        _ => bail!("{}:{}: FROM takes IMAGE [AS NAME]", opts.dockerfile_name, ins.line),
                    };
                    stages.push(Stage { index: stages.len(), name, from: ins, body: Vec::new() });
                }
                ("ARG", None) => {
                    let env = |n: &str| meta_args.get(n).cloned().flatten();
                    let pairs = key_values(&lexer, &ins.args_text(), &env, false).map_err(at)?;
                    for (k, v) in pairs {
                        let value = match opts.build_args.get(&k) {
                            Some(given) => {
                                used.insert(k.clone());
                                Some(given.clone())
                            }
                            None => v.or_else(|| meta_args.get(&k).cloned().flatten()),
                        };
                        meta_args.insert(k, value);
                    }
                }
                (_, None) => bail!(
                    "{}:{}: {} before the first FROM (only ARG may come first)",
                    opts.dockerfile_name,
                    ins.line,
                    ins.keyword
                ),
                (_, Some(stage)) => stage.body.push(ins),
            }
        }
        if stages.is_empty() {
            bail!("{}: no FROM instruction: a Dockerfile must start a stage", opts.dockerfile_name);
        }
        Ok(Builder {
            opts,
            progress,
            lexer,
            meta_args,
            stages,
            used_args: std::cell::RefCell::new(used),
            now: opts.epoch.unwrap_or_else(crate::store::layers::now_unix),
        })
    }

    fn meta_env(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |n| self.meta_args.get(n).cloned().flatten()
    }

    /// The stage a name or index refers to.
    fn stage_ref(&self, r: &str) -> Option<usize> {
        let lower = r.to_ascii_lowercase();
        if let Some(s) = self.stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Some(s.index);
        }
        r.parse::<usize>().ok().filter(|i| *i < self.stages.len())
    }

    fn base_name(&self, s: &Stage) -> Result<String> {
        let text = s.from.args_text();
        let base = text.split_whitespace().next().unwrap_or_default();
        let name = self.lexer.word(base, &self.meta_env()).map_err(|e| self.err(&s.from, e))?;
        if name.is_empty() {
            return Err(self.err(&s.from, anyhow!("FROM names no image (an ARG without a value?)")));
        }
        Ok(name)
    }

    fn err(&self, ins: &Instruction, e: anyhow::Error) -> anyhow::Error {
        anyhow!("{}:{}: {} {e:#}", self.opts.dockerfile_name, ins.line, ins.keyword)
    }

    /// The stages the target needs, by index, and the target's index.
    fn needed(&self) -> Result<(Vec<usize>, usize)> {
        let target = match &self.opts.target {
            Some(t) => self
                .stages
                .iter()
                .find(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
                .map(|s| s.index)
                .with_context(|| format!("target stage {t:?} could not be found"))?,
            None => self.stages.len() - 1,
        };
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !needed.insert(i) {
                continue;
            }
            let s = &self.stages[i];
            let base = self.base_name(s)?;
            if let Some(j) = self.stages[..i]
                .iter()
                .find(|p| p.name.as_deref() == Some(base.to_ascii_lowercase().as_str()))
            {
                todo.push(j.index);
            }
            for ins in &s.body {
                for from in ins.flags_named("from").chain(mount_froms(ins)) {
                    let from = self.lexer.word(from, &self.meta_env()).unwrap_or_else(|_| from.to_string());
                    if let Some(j) = self.stage_ref(&from) {
                        if j >= i {
                            bail!(
                                "{}:{}: --from={from} refers to a stage that is not before this one",
                                self.opts.dockerfile_name,
                                ins.line
                            );
                        }
                        todo.push(j);
                    }
                }
            }
        }
        Ok((needed.into_iter().collect(), target))
    }

    /// Images the build will read from the store (bases and COPY --from images), pulled first
    /// when missing or with --pull. Runs before the build takes the store's writer lock.
    pub fn fetch_images(&self, open: &dyn Fn(LockMode) -> Result<Store>) -> Result<()> {
        let (needed, _) = self.needed()?;
        let mut wanted = BTreeSet::new();
        for &i in &needed {
            let s = &self.stages[i];
            let base = self.base_name(s)?;
            if base != "scratch" && self.stage_ref_named(&base, i).is_none() {
                wanted.insert(base);
            }
            for ins in &s.body {
                for from in ins.flags_named("from") {
                    let from = self.lexer.word(from, &self.meta_env())?;
                    if self.stage_ref(&from).is_none() {
                        wanted.insert(from);
                    }
                }
            }
        }
        for name in wanted {
            let step = self.progress.step(&format!("[internal] load metadata for {}", display_ref(&name)));
            let present = open(LockMode::Shared)?.resolve_image(&name).is_ok();
            if present && !self.opts.pull {
                step.done();
                continue;
            }
            let reference =
                Reference::parse(&name).with_context(|| format!("FROM {name}"))?.with_default_tag();
            let opts =
                crate::registry::PullOptions { platform: self.opts.platform.clone(), ..Default::default() };
            let quiet = crate::registry::Progress::new(true);
            match crate::registry::pull(open, &reference, &opts, &quiet) {
                Ok(_) => step.done(),
                Err(e) if present => {
                    step.status(&format!("pull failed, using the stored image: {e:#}"));
                    step.done();
                }
                Err(e) => {
                    step.error(&format!("{e:#}"));
                    return Err(e.context(format!("{name}: not in the store and the pull failed")));
                }
            }
        }
        Ok(())
    }

    fn stage_ref_named(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages[..before].iter().find(|s| s.name.as_deref() == Some(lower.as_str())).map(|s| s.index)
    }

    /// Builds the target stage; returns the final image (tagged, labels applied).
    pub fn build(&self, store: Store) -> Result<Built> {
        let mut slot = Some(store);
        let (needed, target) = self.needed()?;
        let multi = self.stages.len() > 1;
        let mut results: HashMap<usize, State> = HashMap::new();
        for &i in &needed {
            let stage = &self.stages[i];
            let label = if multi {
                stage.name.clone().unwrap_or_else(|| format!("stage-{i}"))
            } else {
                String::new()
            };
            let st = self.build_stage(&mut slot, stage, &label, &results)?;
            results.insert(i, st);
        }
        for k in self.opts.build_args.keys() {
            if !self.used_args.borrow().contains(k) && !PROXY_ARGS.contains(&k.as_str()) {
                self.progress.note(&format!("[warning] build-arg {k} was not consumed by any ARG"));
            }
        }
        self.check_cancelled()?;
        let store = slot.as_ref().context("internal error: the store was not given back")?;
        let mut st = results.remove(&target).expect("the target was built");
        let step = self.progress.step("exporting to image");
        if !self.opts.labels.is_empty() || st.id.is_none() {
            let labels = st.cfg().entry("Labels").or_insert_with(|| json!({}));
            if let Some(m) = labels.as_object_mut() {
                for (k, v) in &self.opts.labels {
                    m.insert(k.clone(), v.clone().into());
                }
            }
            self.commit(store, &mut st, None, None)?;
        }
        let image = self.image_record(store, &st)?;
        step.status("exporting layers done");
        step.status(&format!("writing image {} done", image.id));
        store.add_image(&image, &self.opts.tags)?;
        for t in &self.opts.tags {
            step.status(&format!("naming to {} done", t.clone().with_default_tag()));
        }
        step.done();
        Ok(Built { image: image.id })
    }

    fn build_stage(
        &self,
        slot: &mut Option<Store>,
        stage: &Stage,
        label: &str,
        done: &HashMap<usize, State>,
    ) -> Result<State> {
        let store = slot.as_ref().context("internal error: the store was not given back")?;
        let base = self.base_name(stage)?;
        let from_stage = self.stage_ref_named(&base, stage.index);
        let triggers: Vec<Instruction>;
        let mut st = if base == "scratch" {
            triggers = Vec::new();
            State {
                id: None,
                layers: Vec::new(),
                config: scratch_config(),
                base: None,
                args: BTreeMap::new(),
                cmd_set: false,
            }
        } else {
            let mut st = match from_stage {
                Some(j) => {
                    let s = done.get(&j).context("internal error: a needed stage was not built")?;
                    State { args: BTreeMap::new(), cmd_set: false, ..s.clone() }
                }
                None => {
                    let img = store.resolve_image(&base).map_err(|e| self.err(&stage.from, e))?;
                    let config = store.base_config(&img)?;
                    State {
                        id: Some(img.id.clone()),
                        layers: img.layers,
                        config,
                        base: Some(img.id),
                        args: BTreeMap::new(),
                        cmd_set: false,
                    }
                }
            };
            let on_build: Vec<String> = st
                .get("OnBuild")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let mut parsed = Vec::new();
            for t in &on_build {
                let f = parse::parse("ONBUILD trigger", t).map_err(|e| self.err(&stage.from, e.into()))?;
                for mut ins in f.instructions {
                    if matches!(ins.keyword.as_str(), "FROM" | "ONBUILD" | "MAINTAINER") {
                        bail!("{}: ONBUILD {} is not allowed as a trigger", base, ins.keyword);
                    }
                    ins.line = stage.from.line;
                    parsed.push(ins);
                }
            }
            if !on_build.is_empty() {
                // Triggers run once, in the image built directly on this one.
                st.cfg().remove("OnBuild");
            }
            triggers = parsed;
            st
        };
        // As BuildKit (and buildah): a stage whose image sets no PATH gets Docker's default.
        let mut env = st.env_list();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
            st.cfg().insert("Env".into(), json!(env));
        }
        let steps: Vec<&Instruction> = triggers.iter().chain(stage.body.iter()).collect();
        let fs_steps = 1 + steps.iter().filter(|i| is_fs_step(&i.keyword)).count();
        let prefix = |k: usize| {
            if label.is_empty() { format!("[{k}/{fs_steps}]") } else { format!("[{label} {k}/{fs_steps}]") }
        };
        let from_step = self.progress.step(&format!("{} FROM {}", prefix(1), display_ref(&base)));
        if let Some(id) = &st.id {
            from_step.status(&format!("resolve {id} done"));
        }
        from_step.done();
        let mut k = 1;
        for ins in steps {
            self.check_cancelled()?;
            let shown = is_fs_step(&ins.keyword);
            if shown {
                k += 1;
            }
            self.dispatch(slot, &mut st, ins, if shown { Some(prefix(k)) } else { None }, done).map_err(
                |e| {
                    if e.downcast_ref::<StepFailed>().is_some() || e.downcast_ref::<Cancelled>().is_some() {
                        e
                    } else {
                        self.err(ins, e)
                    }
                },
            )?;
        }
        Ok(st)
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.opts.cancel.is_cancelled() { Err(Cancelled.into()) } else { Ok(()) }
    }

    /// Substitution environment: ENV first, then the stage's ARGs.
    fn env_of(&self, st: &State) -> impl Fn(&str) -> Option<String> + use<> {
        let env = st.env_list();
        let args = st.args.clone();
        move |n: &str| {
            env.iter()
                .find_map(|e| e.split_once('=').filter(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
                .or_else(|| args.get(n).cloned().flatten())
        }
    }

    fn key(&self, st: &State, text: &str, files: Option<&str>) -> String {
        cache::key(&json!({
            "parent": st.id(),
            "step": text,
            "files": files,
            "args": st.visible_args(),
            "epoch": self.opts.epoch,
        }))
    }

    /// Reuses a cached result for `key` if there is one: prints CACHED.
    fn try_cache(&self, store: &Store, st: &mut State, key: &str) -> Result<bool> {
        if self.opts.no_cache {
            return Ok(false);
        }
        let Some(hit) = cache::get(store, key) else { return Ok(false) };
        let bytes = store.read_blob(&hit.config)?;
        st.config = serde_json::from_slice(&bytes)
            .with_context(|| format!("build cache: config {} is corrupt", hit.config.short()))?;
        st.id = Some(hit.config);
        st.layers = hit.layers;
        Ok(true)
    }

    fn dispatch(
        &self,
        slot: &mut Option<Store>,
        st: &mut State,
        ins: &Instruction,
        title: Option<String>,
        stages: &HashMap<usize, State>,
    ) -> Result<()> {
        if ins.keyword == "RUN" {
            return self.run(slot, st, ins, title.unwrap_or_default());
        }
        let store = slot.as_ref().context("internal error: the store was not given back")?;
        let env = self.env_of(st);
        let text = ins.args_text();
        let kw = ins.keyword.as_str();
        match kw {
            "ARG" => {
                let pairs = key_values(&self.lexer, &text, &env, false)?;
                let mut shown = Vec::new();
                for (k, default) in pairs {
                    let value = if let Some(v) = self.opts.build_args.get(&k) {
                        self.used_args.borrow_mut().insert(k.clone());
                        Some(v.clone())
                    } else {
                        default.clone().or_else(|| self.meta_args.get(&k).cloned().flatten())
                    };
                    shown.push(match &default {
                        Some(d) => format!("{k}={d}"),
                        None => k.clone(),
                    });
                    st.args.insert(k, value);
                }
                self.metadata(store, st, format!("ARG {}", shown.join(" ")), |_| Ok(()))
            }
            "ENV" => {
                let pairs = key_values(&self.lexer, &text, &env, true)?;
                let mut shown = Vec::new();
                let mut sets = Vec::new();
                for (k, v) in pairs {
                    let v = v.with_context(|| format!("ENV {k} has no value (expected {k}=VALUE)"))?;
                    shown.push(format!("{k}={v}"));
                    sets.push((k, v));
                }
                self.metadata(store, st, format!("ENV {}", shown.join(" ")), |st| {
                    let mut list = st.env_list();
                    for (k, v) in &sets {
                        list.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                        list.push(format!("{k}={v}"));
                    }
                    st.cfg().insert("Env".into(), json!(list));
                    Ok(())
                })
            }
            "LABEL" => {
                let pairs = key_values(&self.lexer, &text, &env, true)?;
                let mut shown = Vec::new();
                let mut sets = Vec::new();
                for (k, v) in pairs {
                    let v = v.with_context(|| format!("LABEL {k} has no value (expected {k}=VALUE)"))?;
                    shown.push(format!("{k}={v}"));
                    sets.push((k, v));
                }
                self.metadata(store, st, format!("LABEL {}", shown.join(" ")), |st| {
                    let labels = st.cfg().entry("Labels").or_insert_with(|| json!({}));
                    if !labels.is_object() {
                        *labels = json!({});
                    }
                    for (k, v) in &sets {
                        labels[k] = v.clone().into();
                    }
                    Ok(())
                })
            }
            "MAINTAINER" => self.metadata(store, st, format!("MAINTAINER {text}"), |st| {
                st.config["author"] = text.clone().into();
                Ok(())
            }),
            "EXPOSE" => {
                let mut ports = BTreeSet::new();
                for w in self.lexer.words(&text, &env)? {
                    let (range, proto) = w.split_once('/').unwrap_or((w.as_str(), "tcp"));
                    let proto = proto.to_ascii_lowercase();
                    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
                        bail!("invalid protocol {proto:?} in {w:?}");
                    }
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    let (lo, hi): (u16, u16) = match (lo.parse(), hi.parse()) {
                        (Ok(l), Ok(h)) if l <= h => (l, h),
                        _ => bail!("invalid port {w:?}"),
                    };
                    for p in lo..=hi {
                        ports.insert(format!("{p}/{proto}"));
                    }
                }
                let shown = ports.iter().map(|p| format!("{p}:{{}}")).collect::<Vec<_>>().join(" ");
                self.metadata(store, st, format!("EXPOSE map[{shown}]"), |st| {
                    let m = st.cfg().entry("ExposedPorts").or_insert_with(|| json!({}));
                    if !m.is_object() {
                        *m = json!({});
                    }
                    for p in &ports {
                        m[p] = json!({});
                    }
                    Ok(())
                })
            }
            "VOLUME" => {
                let vols: Vec<String> = match &ins.args {
                    Args::Json(v) => v.iter().map(|s| self.lexer.word(s, &env)).collect::<Result<_>>()?,
                    Args::Shell(s) => self.lexer.words(s, &env)?,
                };
                if vols.iter().any(|v| v.trim().is_empty()) {
                    bail!("VOLUME specified can not be an empty string");
                }
                self.metadata(store, st, format!("VOLUME [{}]", vols.join(" ")), |st| {
                    let m = st.cfg().entry("Volumes").or_insert_with(|| json!({}));
                    if !m.is_object() {
                        *m = json!({});
                    }
                    for v in &vols {
                        m[v] = json!({});
                    }
                    Ok(())
                })
            }
            "USER" => {
                let user = self.lexer.word(&text, &env)?;
                self.metadata(store, st, format!("USER {user}"), |st| {
                    st.cfg().insert("User".into(), user.clone().into());
                    Ok(())
                })
            }
            "STOPSIGNAL" => {
                let sig = self.lexer.word(&text, &env)?;
                let valid = sig.parse::<u32>().is_ok()
                    || sig
                        .to_ascii_uppercase()
                        .strip_prefix("SIG")
                        .unwrap_or(&sig.to_ascii_uppercase())
                        .parse::<nix::sys::signal::Signal>()
                        .is_ok()
                    || format!("SIG{}", sig.to_ascii_uppercase().trim_start_matches("SIG"))
                        .parse::<nix::sys::signal::Signal>()
                        .is_ok();
                if !valid {
                    bail!("invalid signal {sig:?}");
                }
                self.metadata(store, st, format!("STOPSIGNAL {sig}"), |st| {
                    st.cfg().insert("StopSignal".into(), sig.clone().into());
                    Ok(())
                })
            }
            "SHELL" => {
                let Args::Json(shell) = &ins.args else {
                    bail!("SHELL requires the arguments to be in JSON form")
                };
                if shell.is_empty() {
                    bail!("SHELL requires at least one argument");
                }
                let shown = format!("SHELL [{}]", shell.join(" "));
                let shell = shell.clone();
                self.metadata(store, st, shown, |st| {
                    st.cfg().insert("Shell".into(), json!(shell));
                    Ok(())
                })
            }
            "CMD" | "ENTRYPOINT" => {
                let argv = match &ins.args {
                    Args::Json(v) => v.clone(),
                    Args::Shell(s) => {
                        let mut a = st.shell();
                        a.push(s.clone());
                        a
                    }
                };
                let shown =
                    format!("{kw} [{}]", argv.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(" "));
                let is_cmd = kw == "CMD";
                self.metadata(store, st, shown, |st| {
                    if is_cmd {
                        st.cfg().insert("Cmd".into(), json!(argv));
                        st.cmd_set = true;
                    } else {
                        st.cfg().insert("Entrypoint".into(), json!(argv));
                        if !st.cmd_set {
                            st.cfg().insert("Cmd".into(), Value::Null);
                        }
                    }
                    Ok(())
                })
            }
            "HEALTHCHECK" => {
                let hc = self.healthcheck(ins, st)?;
                let shown = format!("HEALTHCHECK {}", serde_json::to_string(&hc)?);
                self.metadata(store, st, shown, |st| {
                    st.cfg().insert("Healthcheck".into(), hc.clone());
                    Ok(())
                })
            }
            "ONBUILD" => {
                let trigger = text.trim().to_string();
                let first = trigger.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                if matches!(first.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    bail!("{first} isn't allowed as an ONBUILD trigger");
                }
                if !parse::INSTRUCTIONS.contains(&first.as_str()) {
                    bail!("unknown instruction in ONBUILD trigger: {first}");
                }
                self.metadata(store, st, format!("ONBUILD {trigger}"), |st| {
                    let list = st.cfg().entry("OnBuild").or_insert_with(|| json!([]));
                    match list.as_array_mut() {
                        Some(a) => a.push(trigger.clone().into()),
                        None => *list = json!([trigger.clone()]),
                    }
                    Ok(())
                })
            }
            "WORKDIR" => {
                let dir = self.lexer.word(&text, &env)?;
                let abs = clean_abs(&if dir.starts_with('/') {
                    dir.clone()
                } else {
                    format!("{}/{dir}", st.workdir())
                });
                let step = self.progress.step(&format!("{} WORKDIR {abs}", title.unwrap_or_default()));
                let created_by = format!("WORKDIR {abs}");
                let key = self.key(st, &created_by, None);
                if self.try_cache(store, st, &key)? {
                    step.cached();
                    return Ok(());
                }
                st.cfg().insert("WorkingDir".into(), abs.clone().into());
                let tree = self.image_tree(store, st)?;
                let exists = tree.tree.resolve(Path::new(&abs), true)?.is_some();
                let layer = if exists {
                    None
                } else {
                    let stage_dir = StageDir::new(store)?;
                    let mut w = copy::Writer::new(&stage_dir.0, &tree.tree, (0, 0), self.now);
                    w.ensure_dir(&super::tree::clean_relative(&abs)?)?;
                    w.apply(&tree.tree, &[])?;
                    Some(self.ingest(store, &stage_dir.0)?)
                };
                self.commit(store, st, layer, Some(created_by))?;
                self.remember(store, &key, st)?;
                step.done();
                Ok(())
            }
            "COPY" | "ADD" => self.copy(store, st, ins, title.unwrap_or_default(), stages),
            other => bail!("unknown instruction {other}"),
        }
    }

    fn healthcheck(&self, ins: &Instruction, st: &State) -> Result<Value> {
        let text = ins.args_text();
        let (first, rest) = text.trim().split_once(char::is_whitespace).unwrap_or((text.trim(), ""));
        let mut hc = Map::new();
        match first.to_ascii_uppercase().as_str() {
            "NONE" => {
                if !rest.trim().is_empty() || !ins.flags.is_empty() {
                    bail!("HEALTHCHECK NONE takes no other arguments");
                }
                hc.insert("Test".into(), json!(["NONE"]));
                return Ok(hc.into());
            }
            "CMD" => {
                let rest = rest.trim();
                let test = match serde_json::from_str::<Vec<String>>(rest) {
                    Ok(v) => std::iter::once("CMD".to_string()).chain(v).collect::<Vec<_>>(),
                    Err(_) if rest.is_empty() => bail!("HEALTHCHECK CMD needs a command"),
                    Err(_) => vec!["CMD-SHELL".to_string(), rest.to_string()],
                };
                hc.insert("Test".into(), json!(test));
            }
            _ => bail!("HEALTHCHECK takes CMD or NONE, not {first:?}"),
        }
        let _ = st;
        for (name, value) in &ins.flags {
            let field = match name.as_str() {
                "interval" => "Interval",
                "timeout" => "Timeout",
                "start-period" => "StartPeriod",
                "start-interval" => "StartInterval",
                "retries" => {
                    let n: i64 = value.parse().map_err(|_| anyhow!("--retries={value:?} is not a number"))?;
                    hc.insert("Retries".into(), n.into());
                    continue;
                }
                other => bail!("unknown flag --{other}"),
            };
            hc.insert(field.into(), duration_ns(value)?.into());
        }
        Ok(hc.into())
    }

    /// A config-only step: cache lookup, then the change, then an empty_layer history entry.
    fn metadata(
        &self,
        store: &Store,
        st: &mut State,
        created_by: String,
        change: impl FnOnce(&mut State) -> Result<()>,
    ) -> Result<()> {
        let key = self.key(st, &created_by, None);
        if self.try_cache(store, st, &key)? {
            return Ok(());
        }
        change(st)?;
        self.commit(store, st, None, Some(created_by))?;
        self.remember(store, &key, st)
    }

    fn image_tree(&self, store: &Store, st: &State) -> Result<BaseTree> {
        BaseTree::new(store, &st.layers())
    }

    fn ingest(&self, store: &Store, dir: &Path) -> Result<LayerRef> {
        store.ingest_upper(dir, &self.pack_options())
    }

    fn pack_options(&self) -> PackOptions {
        PackOptions { compression: Compression::Gzip, clamp_mtime: self.opts.epoch }
    }

    fn copy(
        &self,
        store: &Store,
        st: &mut State,
        ins: &Instruction,
        title: String,
        stages: &HashMap<usize, State>,
    ) -> Result<()> {
        let env = self.env_of(st);
        let kw = ins.keyword.as_str();
        for (name, _) in &ins.flags {
            let ok = match kw {
                "COPY" => ["from", "chown", "chmod", "link", "parents", "exclude"].contains(&name.as_str()),
                _ => {
                    ["chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"].contains(&name.as_str())
                }
            };
            if !ok {
                bail!("unknown flag: --{name}");
            }
        }
        if ins.flag("parents").is_some() || ins.flag("exclude").is_some() || ins.flag("checksum").is_some() {
            bail!("--parents, --exclude and --checksum are not supported");
        }
        let mut words: Vec<String> = match &ins.args {
            Args::Json(v) => v.iter().map(|s| self.lexer.word(s, &env)).collect::<Result<_>>()?,
            Args::Shell(s) => self.lexer.words(s, &env)?,
        };
        if words.len() < 2 {
            bail!(
                "requires at least two arguments, but only one was provided. Destination could not be determined"
            );
        }
        let dest_word = words.pop().expect("two or more");
        let dest = if dest_word.starts_with('/') {
            dest_word.clone()
        } else {
            let wd = st.workdir();
            format!("{}/{dest_word}", wd.trim_end_matches('/'))
        };
        let dest = if dest_word.ends_with('/') && !dest.ends_with('/') { format!("{dest}/") } else { dest };
        let mut sources = Vec::new();
        for w in &words {
            if let Some(name) =
                w.strip_prefix("<<").map(|n| n.trim_start_matches('-').trim_matches(['"', '\'']))
                && let Some(h) = ins.heredocs.iter().find(|h| h.name == name)
            {
                let content =
                    if h.expand { self.lexer_heredoc(&h.content, &env)? } else { h.content.clone() };
                sources.push(Source::Heredoc { name: name.to_string(), content: content.into_bytes() });
                continue;
            }
            if kw == "ADD" && (w.starts_with("http://") || w.starts_with("https://") || w.starts_with("git@"))
            {
                bail!("{w}: remote URLs are not supported by strata's ADD (download it into the context)");
            }
            sources.push(Source::Path(w.clone()));
        }
        let chown = ins.flag("chown").map(|c| self.lexer.word(c, &env)).transpose()?;
        let chmod =
            match ins.flag("chmod") {
                Some(m) => {
                    let m = self.lexer.word(m, &env)?;
                    Some(u32::from_str_radix(&m, 8).ok().filter(|v| *v <= 0o7777).with_context(|| {
                        format!("invalid --chmod={m}: expected an octal mode such as 755")
                    })?)
                }
                None => None,
            };
        let from = ins.flag("from").map(|f| self.lexer.word(f, &env)).transpose()?;
        let base = self.image_tree(store, st)?;
        let owner = chown.as_deref().map(|c| resolve_owner(&base.tree, c)).transpose()?;
        let mut ov = Overrides { owner, mode: chmod, keep_owner: false };
        let from_tree;
        let ignore_none = Ignore::default();
        let ctx = DirTree { root: &self.opts.context, ignore: &self.opts.ignore };
        let source_tree: &dyn Tree = match &from {
            None => &ctx,
            Some(f) => {
                ov.keep_owner = true;
                let layers = match self.stage_ref(f) {
                    Some(j) => stages
                        .get(&j)
                        .with_context(|| format!("--from={f}: stage is not built before this one"))?
                        .layers(),
                    None => store.resolve_image(f).with_context(|| format!("--from={f}"))?.layers,
                };
                from_tree = BaseTree::new(store, &layers)?;
                &from_tree.tree
            }
        };
        let _ = &ignore_none;
        // The destination as the image sees it: symlinks in it followed inside the image.
        let (real_dest, dest_is_dir) = real_dest(&base.tree, &dest)?;
        let plan = copy::plan(source_tree, &sources, &real_dest, dest_is_dir, ov, kw == "ADD", self.now)?;
        let files = copy::hash(source_tree, &plan)?;
        let shown_words: Vec<String> = words.iter().cloned().chain(std::iter::once(dest_word)).collect();
        let flags: String = ins
            .flags
            .iter()
            .map(|(n, v)| if v.is_empty() { format!("--{n} ") } else { format!("--{n}={v} ") })
            .collect();
        let created_by = format!("{kw} {flags}{} # buildkit", shown_words.join(" "));
        let step = self.progress.step(&format!("{title} {kw} {flags}{}", shown_words.join(" ")));
        let key = self.key(st, &created_by, Some(&files));
        if self.try_cache(store, st, &key)? {
            step.cached();
            return Ok(());
        }
        let stage_dir = StageDir::new(store)?;
        let new_owner = owner.unwrap_or((0, 0));
        let mut w = copy::Writer::new(&stage_dir.0, &base.tree, new_owner, self.now);
        w.apply(source_tree, &plan.ops)?;
        let layer = self.ingest(store, &stage_dir.0)?;
        self.commit(store, st, Some(layer), Some(created_by))?;
        self.remember(store, &key, st)?;
        step.done();
        Ok(())
    }

    fn lexer_heredoc(&self, content: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
        // Heredoc bodies expand variables but keep quotes: expand each `$` run only.
        let lexer = Lexer { escape: self.lexer.escape };
        let mut out = String::new();
        for line in content.split_inclusive('\n') {
            let (body, nl) = line.strip_suffix('\n').map(|b| (b, "\n")).unwrap_or((line, ""));
            let escaped = body.replace('\'', "\u{0}").replace('"', "\u{1}");
            out.push_str(&lexer.word(&escaped, env)?.replace('\u{0}', "'").replace('\u{1}', "\""));
            out.push_str(nl);
        }
        Ok(out)
    }

    /// RUN: a container of the image so far runs the command (run API of `crate::container`);
    /// its writable layer, as it stands, becomes the step's layer.
    fn run(&self, slot: &mut Option<Store>, st: &mut State, ins: &Instruction, title: String) -> Result<()> {
        let store = slot.as_ref().context("internal error: the store was not given back")?;
        for (name, _) in &ins.flags {
            if !["mount", "network", "security"].contains(&name.as_str()) {
                bail!("unknown flag: --{name}");
            }
        }
        let network = ins.flag("network").map(str::to_string).or_else(|| self.opts.network.clone());
        if let Some(n) = &network {
            if !["host", "none", "default"].contains(&n.as_str()) {
                bail!("--network={n}: strata build knows host, none and default");
            }
        }
        let script = run_script(ins);
        // A lone heredoc starting with `#!` is a script run by its own interpreter, as BuildKit
        // does it: the body is bound read-only at /dev/pipes/NAME and executed.
        let shebang = lone_heredoc(ins).filter(|h| h.content.starts_with("#!"));
        let argv = match &ins.args {
            Args::Json(v) if ins.heredocs.is_empty() => v.clone(),
            _ if shebang.is_some() => {
                vec![format!("/dev/pipes/{}", shebang.map(|h| h.name.as_str()).unwrap_or(""))]
            }
            _ => {
                let mut a = st.shell();
                a.push(script.clone());
                a
            }
        };
        let args: Vec<(String, String)> = st.visible_args();
        let proxies: Vec<(String, String)> = PROXY_ARGS
            .iter()
            .filter_map(|p| self.opts.build_args.get(*p).map(|v| (p.to_string(), v.clone())))
            .collect();
        let mut env = st.env_list();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        for (k, v) in args.iter().chain(&proxies) {
            if !env.iter().any(|e| e.split_once('=').map(|(ek, _)| ek) == Some(k.as_str())) {
                env.push(format!("{k}={v}"));
            }
        }
        let shown_args = if args.is_empty() {
            String::new()
        } else {
            format!(
                "|{} {} ",
                args.len(),
                args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            )
        };
        let created_by = format!("RUN {shown_args}{} # buildkit", argv.join(" "));
        let mounts: Vec<String> = ins.flags_named("mount").map(str::to_string).collect();
        let step = self.progress.step(&format!("{title} RUN {}", ins.args_text()));
        // What a bind mount shows the step is part of its key, as for COPY.
        let mut bound = Vec::new();
        for m in &mounts {
            if let Some(src) = bind_source(m) {
                let ctx = DirTree { root: &self.opts.context, ignore: &self.opts.ignore };
                let sources = [Source::Path(src)];
                let plan = copy::plan(&ctx, &sources, "/mnt/", true, Overrides::default(), false, 0)?;
                bound.push(copy::hash(&ctx, &plan)?);
            }
        }
        let files = (!bound.is_empty()).then(|| bound.join(" "));
        let key = self.key(st, &format!("{created_by} {mounts:?} {network:?} {script:?}"), files.as_deref());
        if self.try_cache(store, st, &key)? {
            step.cached();
            return Ok(());
        }
        let mut binds = Vec::new();
        for m in &mounts {
            binds.push(self.mount(store, st, m)?);
        }
        let script_dir = match shebang {
            Some(h) => {
                let d = StageDir::new(store)?;
                let file = d.0.join(&h.name);
                std::fs::write(&file, &h.content)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
                binds.push((format!("/dev/pipes/{}", h.name), file, true));
                Some(d)
            }
            None => None,
        };
        if st.id.is_none() {
            // RUN on an empty scratch image: give it an (empty) config to run on.
            self.commit(store, st, None, None)?;
        }
        // A container runs on an image record: one for this step's base, unless the store has
        // it already (a tagged base), removed again once the container is gone.
        let image = self.image_record(store, st)?;
        let temporary = !store.has_image(&image.id);
        if temporary {
            store.add_image(&image, &[])?;
        }
        let forget = |store: &Store| -> Result<()> {
            // Another build's RUN on the same base may run on it now: then that one's to keep.
            let used = || store.containers().map(|cs| cs.iter().any(|c| c.image == image.id));
            if temporary && !used()? {
                store.expect_garbage()?;
                store.remove_image_record(&image.id)?;
            }
            Ok(())
        };
        let spec = ProcessSpec {
            args: argv.clone(),
            env,
            cwd: st.workdir(),
            user: st.get("User").and_then(Value::as_str).unwrap_or("").to_string(),
            network_none: network.as_deref() == Some("none"),
            mounts: binds
                .into_iter()
                .map(|(destination, source, ro)| MountSpec {
                    kind: "bind".into(),
                    source,
                    destination,
                    rw: !ro,
                })
                .collect(),
        };
        let root = store.root().to_path_buf();
        let owned = slot.take().context("internal error: the store was not given back")?;
        let mut out = step.output();
        let mut err = step.output();
        let started = std::time::Instant::now();
        let ran = run_cancellable(
            owned,
            &image.id,
            &spec,
            Output::Capture { stdout: &mut out, stderr: &mut err },
            &self.opts.cancel,
        );
        drop((out, err));
        let command = argv.join(" ");
        let failed = |msg: String| step_failed(&self.opts.dockerfile_name, ins, &msg);
        let cancelled = self.opts.cancel.is_cancelled();
        let finished = match ran {
            Ok(f) => f,
            Err(e) => {
                let store = Store::open(&root, LockMode::Exclusive)?;
                forget(&store)?;
                *slot = Some(store);
                if cancelled {
                    step.canceled();
                    return Err(Cancelled.into());
                }
                let code = e.downcast_ref::<crate::container::StartError>().map(|s| s.code).unwrap_or(125);
                let msg =
                    format!("process \"{command}\" did not complete successfully: exit code: {code}: {e:#}");
                step.error(&msg);
                return Err(failed(msg));
            }
        };
        tracing::info!("RUN process and teardown took {:?}", started.elapsed());
        *slot = Some(finished.store);
        let store = slot.as_ref().expect("just put back");
        let started = std::time::Instant::now();
        let container = finished.container.id.clone();
        drop(script_dir);
        // No stray container, whatever happens: out of the store first (into tmp/, cleared after a
        // crash), so its upper's files can be moved into the layer instead of copied.
        let doomed = store.detach_container(&container)?;
        forget(store)?;
        let layer = if cancelled {
            Err(String::new())
        } else if finished.exit_code != 0 {
            Err(format!(
                "process \"{command}\" did not complete successfully: exit code: {}",
                finished.exit_code
            ))
        } else {
            let upper = doomed.join("upper");
            let empty = std::fs::read_dir(&upper).map(|mut d| d.next().is_none()).unwrap_or(false);
            if empty {
                Ok(None)
            } else {
                store
                    .ingest_discarded_upper(&upper, &self.pack_options())
                    .map(Some)
                    .map_err(|e| format!("{e:#}"))
            }
        };
        tracing::info!("RUN layer ingest took {:?}", started.elapsed());
        let started = std::time::Instant::now();
        std::fs::remove_dir_all(&doomed).with_context(|| format!("cannot remove {}", doomed.display()))?;
        tracing::info!("RUN container removal took {:?}", started.elapsed());
        let layer = match layer {
            Ok(l) => l,
            Err(_) if cancelled => {
                step.canceled();
                return Err(Cancelled.into());
            }
            Err(msg) => {
                step.error(&msg);
                return Err(failed(msg));
            }
        };
        self.commit(store, st, layer, Some(created_by))?;
        self.remember(store, &key, st)?;
        step.done();
        Ok(())
    }

    /// A RUN --mount: (container path, host dir, read-only).
    fn mount(&self, store: &Store, st: &State, spec: &str) -> Result<(String, PathBuf, bool)> {
        let mut kind = "bind".to_string();
        let mut target = None;
        let mut id = None;
        let mut source = None;
        let mut from = None;
        let mut rw = false;
        for part in spec.split(',') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match k {
                "type" => kind = v.to_string(),
                "target" | "dst" | "destination" => target = Some(v.to_string()),
                "id" => id = Some(v.to_string()),
                "source" | "src" => source = Some(v.to_string()),
                "from" => from = Some(v.to_string()),
                "rw" | "readwrite" => rw = v.is_empty() || v == "true",
                "ro" | "readonly" => rw = !(v.is_empty() || v == "true"),
                "sharing" | "mode" | "uid" | "gid" | "required" => {}
                other => bail!("--mount {spec:?}: unknown option {other:?}"),
            }
        }
        let target = target.with_context(|| format!("--mount {spec:?}: target= is required"))?;
        let target = if target.starts_with('/') { target } else { format!("{}/{target}", st.workdir()) };
        match kind.as_str() {
            "cache" => {
                let id = id.unwrap_or_else(|| target.clone());
                let dir = cache::mounts_dir(store).join(cache::key(&json!(["cache", id])));
                std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                Ok((target, dir, false))
            }
            "bind" => {
                if from.is_some() {
                    bail!("--mount type=bind,from= is not supported (bind from the context only)");
                }
                let src = super::tree::clean_relative(source.as_deref().unwrap_or("."))?;
                let ctx = DirTree { root: &self.opts.context, ignore: &self.opts.ignore };
                let real = ctx.resolve(&src, true)?.with_context(|| {
                    format!("--mount {spec:?}: {} not found in the build context", src.display())
                })?;
                Ok((target, self.opts.context.join(real), !rw))
            }
            other => bail!("--mount type={other} is not supported (cache and bind are)"),
        }
    }

    /// The step's result: the state's config (plus a layer and a history entry when given)
    /// stored as a blob, the layer added to the state's. No image record (see [`Self::image_record`]).
    fn commit(
        &self,
        store: &Store,
        st: &mut State,
        layer: Option<LayerRef>,
        created_by: Option<String>,
    ) -> Result<()> {
        let author = st.config.get("author").and_then(Value::as_str).map(str::to_string);
        let mut layers = st.layers();
        let history = created_by.map(|c| HistoryEntry {
            created: self.now,
            created_by: c,
            author: None,
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: layer.is_none(),
        });
        let mut config = match (&layer, &history) {
            (Some(l), Some(h)) => {
                layers.push(l.clone());
                extend_config(Some(&st.config), &l.diff_id, h)?
            }
            (None, Some(h)) => {
                let mut c = st.config.clone();
                c["created"] = crate::oci::time::format_rfc3339(self.now).into();
                match c.get_mut("history").and_then(Value::as_array_mut) {
                    Some(list) => list.push(h.to_json()),
                    None => c["history"] = json!([h.to_json()]),
                }
                c
            }
            (_, None) => {
                let mut c = st.config.clone();
                c["created"] = crate::oci::time::format_rfc3339(self.now).into();
                c
            }
        };
        if let Some(a) = author {
            config["author"] = a.into();
        }
        let bytes = config_bytes(&config);
        st.id = Some(store.put_blob_bytes(&bytes)?);
        st.layers = layers;
        st.config = config;
        Ok(())
    }

    /// The cache remembers the step's result under `key`.
    fn remember(&self, store: &Store, key: &str, st: &State) -> Result<()> {
        let id = st.id.as_ref().context("internal error: a step without a result")?;
        cache::put(store, key, id, &st.layers)
    }

    /// An image record of the state (its manifest stored; the record not written unless the
    /// store has it already): what a build exports, or what a RUN's container runs on.
    fn image_record(&self, store: &Store, st: &State) -> Result<ImageRecord> {
        let id = st.id.clone().context("internal error: an image without a config")?;
        if store.has_image(&id) {
            // The same config stored already (the base itself): kept as it is, manifest and all.
            return store.image(&id);
        }
        let size = store.blob_size(&id)?;
        let config_desc = Descriptor::new(media::OCI_CONFIG, &id, size);
        let descs: Vec<_> = st
            .layers
            .iter()
            .map(|l| Descriptor::new(&oci_layer_type(&l.media_type), &l.blob, l.blob_size))
            .collect();
        let manifest = store.put_blob_bytes(&build_manifest(&config_desc, &descs))?;
        Ok(ImageRecord {
            id,
            manifest,
            manifest_media_type: media::OCI_MANIFEST.to_string(),
            layers: st.layers.clone(),
            repo_digests: Vec::new(),
            added: crate::store::layers::now_unix(),
            parent: st.base.clone(),
        })
    }
}

fn step_failed(file: &str, ins: &Instruction, msg: &str) -> anyhow::Error {
    anyhow::Error::new(StepFailed(format!("{file}:{}: {msg}", ins.line)))
}

/// A failed RUN (already reported on its step): its message is final.
#[derive(Debug)]
pub struct StepFailed(pub String);

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StepFailed {}

/// The build was cancelled (Ctrl-C, SIGTERM): BuildKit's words for it.
#[derive(Debug)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Canceled: context canceled")
    }
}

impl std::error::Error for Cancelled {}

/// The heredoc of `RUN <<EOF` with nothing else on the line.
fn lone_heredoc(ins: &Instruction) -> Option<&parse::Heredoc> {
    let line = ins.args_text();
    let t = line.trim();
    (ins.heredocs.len() == 1 && t.starts_with("<<") && !t.contains(char::is_whitespace))
        .then(|| &ins.heredocs[0])
}

/// The shell script of a RUN: the line, with heredoc bodies following it as a shell reads them;
/// a lone `<<EOF` runs its body.
fn run_script(ins: &Instruction) -> String {
    let line = ins.args_text();
    if ins.heredocs.is_empty() {
        return line;
    }
    if let Some(h) = lone_heredoc(ins) {
        return h.content.clone();
    }
    let mut s = line;
    for h in &ins.heredocs {
        s.push('\n');
        s.push_str(&h.content);
        s.push_str(&h.name);
    }
    s
}

/// The context path a `--mount` binds (type=bind without from=), if it is one.
fn bind_source(spec: &str) -> Option<String> {
    let mut bind = true;
    let mut source = ".".to_string();
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", t)) => bind = t == "bind",
            Some(("from", _)) => bind = false,
            Some(("source" | "src", v)) => source = v.to_string(),
            _ => {}
        }
    }
    bind.then_some(source)
}

fn mount_froms(ins: &Instruction) -> impl Iterator<Item = &str> {
    ins.flags_named("mount").flat_map(|m| m.split(',')).filter_map(|p| p.strip_prefix("from="))
}

fn is_fs_step(kw: &str) -> bool {
    matches!(kw, "RUN" | "COPY" | "ADD" | "WORKDIR")
}

/// `busybox` → `docker.io/library/busybox:latest`, as BuildKit prints it.
fn display_ref(name: &str) -> String {
    if name == "scratch" {
        return name.to_string();
    }
    Reference::parse(name).map(|r| r.with_default_tag().to_string()).unwrap_or_else(|_| name.to_string())
}

/// Path.Clean of an absolute path.
fn clean_abs(p: &str) -> String {
    format!("/{}", super::ignore::clean(p))
}

/// Go durations as HEALTHCHECK takes them (`30s`, `1m30s`, `500ms`), in nanoseconds.
fn duration_ns(s: &str) -> Result<i64> {
    let bad = || anyhow!("invalid duration {s:?}");
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.').ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(total as i64)
}

/// `--chown=user[:group]`: numbers, or names from the image's /etc/passwd and /etc/group.
fn resolve_owner(tree: &dyn Tree, spec: &str) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |path: &str| -> Result<String> {
        let Some(real) = tree.resolve(Path::new(path), true)? else { return Ok(String::new()) };
        let mut s = String::new();
        std::io::Read::read_to_string(&mut tree.open(&real)?, &mut s)?;
        Ok(s)
    };
    let lookup = |file: &str, name: &str| -> Result<Option<(u32, u32)>> {
        for line in read(file)?.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                let id = f[2].parse().ok();
                let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0);
                return Ok(id.map(|i| (i, gid)));
            }
        }
        Ok(None)
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => lookup("/etc/passwd", user)?
            .with_context(|| format!("--chown={spec}: no user {user:?} in the image's /etc/passwd"))?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("/etc/group", g)?
                .map(|(id, _)| id)
                .with_context(|| format!("--chown={spec}: no group {g:?} in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

/// Where COPY writes in the image: the destination with symlinks in its parents followed, and
/// whether it already is a directory (then sources go inside it).
fn real_dest(tree: &dyn Tree, dest: &str) -> Result<(String, bool)> {
    let trailing = dest.ends_with('/');
    let rel = super::tree::clean_relative(dest)?;
    if let Some(real) = tree.resolve(&rel, true)? {
        if tree.lstat(&real)?.is_some_and(|m| m.kind == Kind::Dir) {
            return Ok((format!("/{}/", real.display()), true));
        }
    }
    let name = rel.file_name().map(|n| n.to_os_string());
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    let real_parent = tree.resolve(&parent, true)?.unwrap_or(parent);
    let full = match name {
        Some(n) => real_parent.join(n),
        None => real_parent,
    };
    Ok((format!("/{}{}", full.display(), if trailing { "/" } else { "" }), false))
}

/// A staging directory in the store's tmp/, removed on drop.
struct StageDir(PathBuf);

impl StageDir {
    fn new(store: &Store) -> Result<StageDir> {
        let p = staging::tmp_path(&store.tmp_dir(), "build");
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(StageDir(p))
    }
}

impl Drop for StageDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The merged tree of an image's layers (an empty directory stands in for no layers).
struct BaseTree {
    tree: ImageTree,
    _empty: Option<StageDir>,
}

impl BaseTree {
    fn new(store: &Store, layers: &[LayerRef]) -> Result<BaseTree> {
        let (lowers, empty) = if layers.is_empty() {
            let d = StageDir::new(store)?;
            (vec![d.0.clone()], Some(d))
        } else {
            (layers.iter().rev().map(|l| store.layer_fs(&l.diff_id)).collect(), None)
        };
        let stack = crate::union::Stack::new(&lowers, None).context("opening the image's layers")?;
        Ok(BaseTree { tree: ImageTree { stack }, _empty: empty })
    }
}

impl copy::Base for ImageTree {
    fn dir_meta(&self, rel: &Path) -> Result<Option<Meta>> {
        self.lstat(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_paths_and_scripts() {
        assert_eq!(duration_ns("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(duration_ns("500ms").unwrap(), 500_000_000);
        assert!(duration_ns("5").is_err() && duration_ns("").is_err() && duration_ns("3d").is_err());
        assert_eq!(clean_abs("/a/./b/../c//"), "/a/c");
        assert_eq!(clean_abs("/../x"), "/x");
        let f = parse::parse("D", "RUN <<EOF\necho a\nEOF\nRUN python3 <<PY\nprint(1)\nPY\n").unwrap();
        assert_eq!(run_script(&f.instructions[0]), "echo a\n");
        assert_eq!(run_script(&f.instructions[1]), "python3 <<PY\nprint(1)\nPY");
    }
}
