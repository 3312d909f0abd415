//! The structs of `sys` against the real header: tests/bindings/struct_layout.c is compiled
//! with the C compiler (CC, default cc) and prints every struct's size and every field's
//! offset and size; each must match this crate's mirror, field for field.
use std::collections::BTreeMap;
use std::mem::{size_of, MaybeUninit};
use std::path::PathBuf;
use std::process::Command;

use minimax::sys;

/// "struct" -> size and "struct.field" -> offset and size, as the mirror in `sys` lays them out.
macro_rules! layout {
    ($map:ident, $t:ident { $($f:ident),* $(,)? }) => {{
        $map.insert(stringify!($t).to_string(), vec![size_of::<sys::$t>()]);
        let value = MaybeUninit::<sys::$t>::uninit();
        let base = value.as_ptr();
        $(
            // SAFETY: addr_of! computes a field address without reading the uninitialised value.
            let field = unsafe { std::ptr::addr_of!((*base).$f) };
            $map.insert(
                format!("{}.{}", stringify!($t), stringify!($f)),
                vec![field as usize - base as usize, size_of_pointee(field)],
            );
        )*
    }};
}

fn size_of_pointee<T>(_: *const T) -> usize {
    size_of::<T>()
}

fn rust_layout() -> BTreeMap<String, Vec<usize>> {
    let mut m = BTreeMap::new();
    layout!(
        m,
        mmx_device_info {
            struct_size,
            index,
            compute_major,
            compute_minor,
            multiprocessors,
            total_memory_bytes,
            free_memory_bytes,
            name
        }
    );
    layout!(
        m,
        mmx_model_info {
            struct_size,
            vocab_size,
            num_layers,
            num_softmax_layers,
            hidden_size,
            num_heads,
            num_kv_heads,
            head_dim,
            num_experts,
            experts_per_token,
            bos_token,
            eos_token,
            context_limit,
            parameter_count,
            weight_bytes,
            backend,
            fingerprint
        }
    );
    layout!(
        m,
        mmx_memory_estimate {
            struct_size,
            weight_bytes,
            state_bytes_per_sequence,
            kv_bytes_per_token,
            workspace_bytes,
            total_bytes
        }
    );
    layout!(
        m,
        mmx_context_stats {
            struct_size,
            running_sequences,
            queued_requests,
            _reserved,
            submitted_requests,
            finished_requests,
            prompt_tokens,
            generated_tokens,
            steps,
            state_bytes_in_use,
            state_bytes_limit,
            busy_seconds
        }
    );
    m
}

fn c_layout() -> BTreeMap<String, Vec<usize>> {
    let include = env!("MINIMAX_INCLUDE_DIR");
    assert!(!include.is_empty(), "build.rs found no include directory; set MINIMAX_INCLUDE_DIR");
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let source = manifest.join("../../tests/bindings/struct_layout.c");
    let exe = std::env::temp_dir().join(format!("minimax-rust-layout-{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .arg("-I")
        .arg(include)
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {}", cc, e));
    assert!(status.success(), "{} failed on {}", cc, source.display());
    let out = Command::new(&exe).output().unwrap();
    std::fs::remove_file(&exe).ok();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let key = words.next().unwrap().to_string();
            (key, words.map(|w| w.parse().unwrap()).collect())
        })
        .collect()
}

#[test]
fn structs_match_the_c_header() {
    let (c, rust) = (c_layout(), rust_layout());
    assert!(c.len() > 40, "the layout program printed too little: {:?}", c);
    for (key, numbers) in &c {
        assert_eq!(rust.get(key), Some(numbers), "{} (C: size or offset, size)", key);
    }
    assert_eq!(c.len(), rust.len(), "the Rust mirror has fields the header lacks");
}
