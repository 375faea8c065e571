//! Adapter choice and device creation.
//!
//! The best adapter is picked (discrete over integrated over virtual over software), or the one
//! whose name contains `UNET_GPU_ADAPTER` / `--adapter`. The device gets the adapter's real
//! limits (large storage bindings on big GPUs) and only the optional features the kernels use.

use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What `unet-gpu devices` prints about an adapter.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub features: Vec<(&'static str, bool)>,
    pub coop_16x16x16_f16_f32: bool,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
}

fn rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

pub fn has_coop_16_f16_f32(adapter: &wgpu::Adapter) -> bool {
    adapter.features().contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        && adapter.cooperative_matrix_properties().iter().any(|p| {
            p.m_size == 16
                && p.n_size == 16
                && p.k_size == 16
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn report(a: &wgpu::Adapter) -> AdapterReport {
    let i = a.get_info();
    let f = a.features();
    let l = a.limits();
    AdapterReport {
        name: i.name.clone(),
        backend: format!("{:?}", i.backend),
        device_type: format!("{:?}", i.device_type),
        driver: i.driver.clone(),
        driver_info: i.driver_info.clone(),
        features: vec![
            ("SHADER_F16", f.contains(wgpu::Features::SHADER_F16)),
            ("SUBGROUP", f.contains(wgpu::Features::SUBGROUP)),
            // not used yet: would let the tensor-core epilogue sync one subgroup instead of the workgroup
            ("SUBGROUP_BARRIER", f.contains(wgpu::Features::SUBGROUP_BARRIER)),
            ("TIMESTAMP_QUERY", f.contains(wgpu::Features::TIMESTAMP_QUERY)),
            ("EXPERIMENTAL_COOPERATIVE_MATRIX", f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)),
        ],
        coop_16x16x16_f16_f32: has_coop_16_f16_f32(a),
        max_storage_binding: l.max_storage_buffer_binding_size,
        max_buffer: l.max_buffer_size,
    }
}

/// Every adapter wgpu can see, best first.
pub fn list_adapters() -> Vec<AdapterReport> {
    let inst = instance();
    let mut all = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    all.sort_by_key(|a| rank(a.get_info().device_type));
    all.iter().map(report).collect()
}

/// How long `GpuContext::wait` lets submitted work run before giving up: `UNET_GPU_WAIT_S`
/// seconds (0: no limit), else 600 s on a hardware adapter and an hour on a software one, where
/// llvmpipe compiles each kernel at its first dispatch, inside the submission, and a big model's
/// first run on two busy cores has taken over ten minutes.
pub fn wait_limit(device_type: wgpu::DeviceType) -> Result<Option<std::time::Duration>> {
    parse_wait_limit(std::env::var("UNET_GPU_WAIT_S").ok().as_deref(), device_type)
}

/// `wait_limit` for a given value of `UNET_GPU_WAIT_S`.
pub fn parse_wait_limit(value: Option<&str>, device_type: wgpu::DeviceType) -> Result<Option<std::time::Duration>> {
    let secs = match value.map(str::trim) {
        Some(v) if !v.is_empty() => v.parse::<u64>().map_err(|_| {
            Error::Gpu(format!("UNET_GPU_WAIT_S must be a whole number of seconds (0: no limit), not '{v}'"))
        })?,
        _ if device_type == wgpu::DeviceType::Cpu => 3600,
        _ => 600,
    };
    Ok((secs > 0).then(|| std::time::Duration::from_secs(secs)))
}

/// The GPU the engine runs on: device, queue and what it can do.
pub struct GpuContext {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub timestamps: bool,
    pub shader_f16: bool,
    pub coop: bool,
    /// How long `wait` lets submitted work run: see `wait_limit`.
    pub wait_limit: Option<std::time::Duration>,
    lost: Arc<AtomicBool>,
    lost_msg: Arc<Mutex<String>>,
    /// Uncaptured errors (should not happen: operations are wrapped in error scopes).
    errors: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuContext({} on {:?})", self.info.name, self.info.backend)
    }
}

impl GpuContext {
    /// Open the best adapter, or the one named (substring, case-insensitive) by `name` or the
    /// `UNET_GPU_ADAPTER` environment variable.
    pub fn new(name: Option<&str>) -> Result<Arc<GpuContext>> {
        let inst = instance();
        let mut all = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        if all.is_empty() {
            return Err(Error::Gpu(
                "no GPU adapter found (no Vulkan/Metal/DX12/GL driver answered; on Linux without a GPU, install Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)".into(),
            ));
        }
        all.sort_by_key(|a| rank(a.get_info().device_type));
        let env = std::env::var("UNET_GPU_ADAPTER").ok();
        let want = name.map(|s| s.to_string()).or(env);
        let adapter = match want {
            Some(w) if !w.is_empty() => {
                let wl = w.to_lowercase();
                let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
                all.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&wl)).ok_or_else(|| {
                    Error::Gpu(format!("no adapter's name contains '{w}' (adapters: {})", names.join(", ")))
                })?
            }
            _ => all.into_iter().next().unwrap(),
        };
        let info = adapter.get_info();
        let af = adapter.features();
        let mut features = wgpu::Features::empty();
        for f in [wgpu::Features::TIMESTAMP_QUERY, wgpu::Features::SHADER_F16] {
            if af.contains(f) {
                features |= f;
            }
        }
        let coop = has_coop_16_f16_f32(&adapter) && af.contains(wgpu::Features::SHADER_F16);
        let experimental = if coop {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            // SAFETY: the cooperative-matrix kernels are only used after the adapter reported
            // the 16x16x16 f16 x f16 + f32 configuration they are written for, and their
            // results are tested against the CPU reference.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let wait_limit = wait_limit(info.device_type)?;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("unet-gpu"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: experimental,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Gpu(format!("could not open device '{}': {e}", info.name)))?;
        let lost = Arc::new(AtomicBool::new(false));
        let lost_msg = Arc::new(Mutex::new(String::new()));
        {
            let (lost, lost_msg) = (lost.clone(), lost_msg.clone());
            device.set_device_lost_callback(move |reason, msg| {
                if reason != wgpu::DeviceLostReason::Destroyed {
                    *lost_msg.lock().unwrap() = format!("{reason:?}: {msg}");
                    lost.store(true, Ordering::SeqCst);
                }
            });
        }
        let errors = Arc::new(Mutex::new(Vec::new()));
        {
            let errors = errors.clone();
            device.on_uncaptured_error(Arc::new(move |e| {
                errors.lock().unwrap().push(e.to_string());
            }));
        }
        Ok(Arc::new(GpuContext {
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            coop,
            wait_limit,
            adapter,
            device,
            queue,
            info,
            limits,
            lost,
            lost_msg,
            errors,
        }))
    }

    /// Cooperative matrices usable by the coop kernels: 16x16x16 f16 -> f32, and subgroups of
    /// 32 lanes (the kernels map subgroups to invocation ranges of 32).
    pub fn coop_ready(&self) -> bool {
        self.coop && self.info.subgroup_min_size <= 32 && 32 <= self.info.subgroup_max_size
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, {} {})",
            self.info.name, self.info.backend, self.info.device_type, self.info.driver, self.info.driver_info
        )
    }

    /// An error if the device was lost or an uncaptured error was reported.
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::Gpu(format!("device lost ({})", self.lost_msg.lock().unwrap())));
        }
        let mut e = self.errors.lock().unwrap();
        if !e.is_empty() {
            let msg = e.join(" | ");
            e.clear();
            return Err(Error::Gpu(msg));
        }
        Ok(())
    }

    /// Run `f` inside out-of-memory and validation error scopes; their errors become ours.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let e_val = pollster::block_on(val.pop());
        let e_oom = pollster::block_on(oom.pop());
        if let Some(e) = e_oom {
            return Err(Error::Gpu(format!("out of GPU memory while {what}: {e}")));
        }
        if let Some(e) = e_val {
            return Err(Error::Gpu(format!("{what}: {e}")));
        }
        self.check()?;
        Ok(out)
    }

    /// Wait for submitted work.
    pub fn wait(&self) -> Result<()> {
        let limit = self.wait_limit;
        self.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: limit }).map_err(|e| {
            let after = match limit {
                Some(d) => format!(" after {} s (UNET_GPU_WAIT_S sets the limit; 0: none)", d.as_secs()),
                None => String::new(),
            };
            Error::Gpu(format!("waiting for the GPU failed{after}: {e}"))
        })?;
        self.check()
    }

    /// Map a MAP_WRITE buffer (idle), copy `bytes` to its start, and unmap it.
    pub fn write_mapped(&self, buf: &wgpu::Buffer, bytes: &[u8]) -> Result<()> {
        let slice = buf.slice(..bytes.len() as u64);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Write, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu(format!("mapping the input upload buffer failed: {e}"))),
            Err(_) => return Err(Error::Gpu("mapping the input upload buffer timed out".into())),
        }
        {
            let mut view = slice
                .get_mapped_range_mut()
                .map_err(|e| Error::Gpu(format!("mapping the input upload buffer failed: {e:?}")))?;
            view.copy_from_slice(bytes);
        }
        buf.unmap();
        Ok(())
    }

    /// Map a MAP_READ buffer and copy out its bytes (after the copy into it was submitted).
    pub fn read_buffer(&self, buf: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let slice = buf.slice(..size);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Gpu(format!("reading results back failed: {e}"))),
            Err(_) => return Err(Error::Gpu("reading results back timed out".into())),
        }
        let v =
            slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading results back failed: {e:?}")))?.to_vec();
        buf.unmap();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wgpu::DeviceType::{Cpu, DiscreteGpu};

    #[test]
    fn wait_limit_defaults_and_overrides() {
        assert_eq!(parse_wait_limit(None, DiscreteGpu).unwrap(), Some(Duration::from_secs(600)));
        assert_eq!(parse_wait_limit(None, Cpu).unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_wait_limit(Some(" "), Cpu).unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_wait_limit(Some("45"), Cpu).unwrap(), Some(Duration::from_secs(45)));
        assert_eq!(parse_wait_limit(Some("0"), DiscreteGpu).unwrap(), None);
        let e = parse_wait_limit(Some("-3"), DiscreteGpu).unwrap_err().to_string();
        assert!(e.contains("UNET_GPU_WAIT_S") && e.contains("'-3'"), "{e}");
    }
}
