//! Signing one presigned PUT: the broker's presigner (`aws-sigv4` with the
//! current credentials, the URL assembled around its parameters) beside a
//! bare `aws-sigv4` call on the same request, in the same run.

use std::time::{Duration, Instant, SystemTime};

use aws_sigv4::{
    http_request::{
        PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
        UriPathNormalizationMode, sign,
    },
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use chatgenius_files::storage::{CredentialSource, Presigner, StorageSettings};

const ROUNDS: u32 = 100_000;
const KEY: &str = "uploads/7/0190a1b2c3d4e5f6a7b8c9d0e1f2a3b4/holiday photo.png";

/// The same URL through `aws-sigv4`'s signer, signing and all.
fn library_url(identity: &Identity, ttl: Duration) -> String {
    let url = format!("http://127.0.0.1:9000/chatgenius-files/{}", KEY.replace(' ', "%20"));
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(ttl);
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers = [("content-length", "1024"), ("content-type", "image/png"), ("if-none-match", "*")];
    let request = SignableRequest::new("PUT", &url, headers.into_iter(), SignableBody::UnsignedPayload).unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut out = url;
    for (i, (name, value)) in instructions.params().iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        out.push('=');
        out.extend(percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC));
    }
    out
}

fn per_call(mut f: impl FnMut() -> usize) -> f64 {
    let mut sink = 0;
    for _ in 0..1000 {
        sink += f();
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        sink += f();
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
    assert!(sink > 0);
    micros
}

pub fn run() {
    let credentials = CredentialSource::fixed("CGFEXAMPLEKEYID00000", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    let settings = StorageSettings {
        endpoint: None,
        public_endpoint: None,
        region: "us-east-1".into(),
        bucket: "chatgenius-files".parse().unwrap(),
        credentials: credentials.clone(),
        force_path_style: true,
        timeouts: Default::default(),
    };
    let presigner = Presigner::new(&settings, Some("http://127.0.0.1:9000"));
    let ttl = Duration::from_secs(900);
    let identity: Identity = credentials.current().into();
    let ours = per_call(|| presigner.put_object(KEY, "image/png", 1024, None, ttl).unwrap().url.len());
    let library = per_call(|| library_url(&identity, ttl).len());
    println!("\n## Signing one presigned PUT ({ROUNDS} calls each, one thread)\n");
    println!("| signer | µs per URL | ratio |");
    println!("|---|---:|---:|");
    println!("| broker presigner | {ours:.2} | 1.00 |");
    println!("| bare aws-sigv4 `http_request::sign`, query mode | {library:.2} | {:.2} |", library / ours);
}
