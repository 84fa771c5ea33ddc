//! Records how the extension was optimised, so Python can warn about (and benchmarks refuse)
//! an unoptimised build.

fn main() {
    let opt_level = std::env::var("OPT_LEVEL").unwrap_or_else(|_| "unknown".to_owned());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=NBA_FAST_OPT_LEVEL={opt_level}");
    println!("cargo:rustc-env=NBA_FAST_PROFILE={profile}");
}
