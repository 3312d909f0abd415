//! Finds libminimax: MINIMAX_LIB_DIR / MINIMAX_INCLUDE_DIR when set (a build tree), otherwise
//! `pkg-config minimax` (an installed package). The include directory is passed on to the
//! crate as MINIMAX_INCLUDE_DIR, which the layout test compiles the real header from.
use std::env;
use std::process::Command;

fn pkg_config(args: &[&str]) -> String {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("minimax")
        .output()
        .unwrap_or_else(|e| panic!("cannot run pkg-config ({}); set MINIMAX_LIB_DIR", e));
    if !out.status.success() {
        panic!(
            "pkg-config cannot find minimax: {}\nInstall libminimax (and set PKG_CONFIG_PATH), \
             or set MINIMAX_LIB_DIR and MINIMAX_INCLUDE_DIR to a build tree.",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config printed non-UTF-8").trim().to_string()
}

fn main() {
    for var in ["MINIMAX_LIB_DIR", "MINIMAX_INCLUDE_DIR", "PKG_CONFIG_PATH"] {
        println!("cargo:rerun-if-env-changed={}", var);
    }
    let include_dir = match env::var("MINIMAX_LIB_DIR") {
        Ok(lib_dir) => {
            println!("cargo:rustc-link-search=native={}", lib_dir);
            println!("cargo:rustc-link-lib=dylib=minimax");
            env::var("MINIMAX_INCLUDE_DIR").unwrap_or_default()
        }
        Err(_) => {
            for flag in pkg_config(&["--libs"]).split_whitespace() {
                if let Some(dir) = flag.strip_prefix("-L") {
                    println!("cargo:rustc-link-search=native={}", dir);
                } else if let Some(lib) = flag.strip_prefix("-l") {
                    println!("cargo:rustc-link-lib=dylib={}", lib);
                }
            }
            env::var("MINIMAX_INCLUDE_DIR").unwrap_or_else(|_| pkg_config(&["--variable=includedir"]))
        }
    };
    println!("cargo:rustc-env=MINIMAX_INCLUDE_DIR={}", include_dir);
}
