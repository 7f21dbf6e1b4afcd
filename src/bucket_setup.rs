//! `chatgenius-files bucket-setup`: brings the bucket to the configuration the
//! service expects (exists, no public access, SSE-S3 by default, versioning when
//! asked, CORS for the browser origins, incomplete multipart uploads aborted by
//! a lifecycle rule), checks that a PUT still works, and reports, setting by
//! setting, what it did.

use std::fmt;

use aws_sdk_s3::{
    Client,
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
    types::{
        AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus, CorsConfiguration,
        CorsRule, ExpirationStatus, LifecycleRule, LifecycleRuleFilter, PublicAccessBlockConfiguration,
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule, VersioningConfiguration,
    },
};

use crate::config::Origin;

/// Id of the lifecycle rule this command owns (other rules are kept).
pub const LIFECYCLE_RULE_ID: &str = "chatgenius-abort-incomplete-multipart";

/// What happened to one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Changed now.
    Applied,
    /// Was already as wanted.
    AlreadySet,
    /// A check that passed.
    Checked,
    /// Not asked for by the configuration.
    Skipped(String),
    /// The store does not implement it.
    NotSupported(String),
    /// The store refused or failed.
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Applied => f.write_str("applied"),
            Self::AlreadySet => f.write_str("already set"),
            Self::Checked => f.write_str("ok"),
            Self::Skipped(_) => f.write_str("skipped"),
            Self::NotSupported(_) => f.write_str("not supported by this store"),
            Self::Failed(_) => f.write_str("FAILED"),
        }
    }
}

/// What the bucket should look like.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub bucket: String,
    pub versioning: bool,
    pub cors_origins: Vec<Origin>,
    pub abort_multipart_after_days: i32,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Step {
    pub setting: &'static str,
    pub outcome: Outcome,
}

/// Every setting's outcome.
#[derive(Debug, Clone)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    /// The outcome of `setting`.
    pub fn outcome(&self, setting: &str) -> Option<&Outcome> {
        self.steps.iter().find(|s| s.setting == setting).map(|s| &s.outcome)
    }

    pub fn any_failed(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.outcome, Outcome::Failed(_)))
    }

    pub fn any_unsupported(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.outcome, Outcome::NotSupported(_)))
    }

    /// A Markdown table: setting, result, detail.
    pub fn table(&self) -> String {
        let mut out = String::from("| setting | result | detail |\n|---|---|---|\n");
        for step in &self.steps {
            let detail = match &step.outcome {
                Outcome::Skipped(d) | Outcome::NotSupported(d) | Outcome::Failed(d) => d.as_str(),
                _ => "",
            };
            out.push_str(&format!("| {} | {} | {} |\n", step.setting, step.outcome, detail.replace('|', "/")));
        }
        out
    }
}

/// Applies every setting in turn; a failure of one does not stop the others
/// (except a missing bucket that cannot be created).
pub async fn run(client: &Client, wanted: &Wanted) -> Report {
    let mut steps = vec![Step { setting: "bucket exists", outcome: ensure_bucket(client, &wanted.bucket).await }];
    if matches!(steps[0].outcome, Outcome::Failed(_)) {
        return Report { steps };
    }
    steps.push(Step { setting: "block public access", outcome: block_public_access(client, &wanted.bucket).await });
    steps.push(Step {
        setting: "default encryption (SSE-S3)",
        outcome: default_encryption(client, &wanted.bucket).await,
    });
    steps.push(Step { setting: "versioning", outcome: versioning(client, wanted).await });
    steps.push(Step { setting: "CORS rules", outcome: cors(client, wanted).await });
    steps.push(Step { setting: "abort incomplete multipart uploads", outcome: lifecycle(client, wanted).await });
    steps.push(Step { setting: "a PUT still works", outcome: write_probe(client, &wanted.bucket).await });
    Report { steps }
}

/// Writes and deletes one small object under `uploads/`, the way the service
/// will: a store can accept a setting and then refuse every upload (SeaweedFS
/// with default encryption and no SSE key answers each PUT with 500). A probe
/// left behind is removed by the sweeper like any object no row knows.
async fn write_probe(client: &Client, bucket: &str) -> Outcome {
    let key = format!("uploads/bucket-setup-probe/{}", uuid::Uuid::new_v4().simple());
    let put = client.put_object().bucket(bucket).key(&key).content_type("text/plain").body(b"probe".to_vec().into());
    if let Err(err) = put.send().await {
        let (code, message) = (err.code().unwrap_or("error"), err.message().unwrap_or(""));
        return Outcome::Failed(format!("the store refused a PUT after setup: {code} {message}").trim_end().to_owned());
    }
    match client.delete_object().bucket(bucket).key(&key).send().await {
        Ok(_) => Outcome::Checked,
        Err(err) => {
            Outcome::Failed(format!("the probe object could not be deleted: {}", err.code().unwrap_or("error")))
        }
    }
}

/// How a failed call is reported: unimplemented operations are "not supported",
/// a missing configuration is `None` (nothing set yet), the rest failures.
fn classify<E>(err: &SdkError<E, HttpResponse>) -> Result<(), Outcome>
where
    E: ProvideErrorMetadata,
{
    let code = err.code().unwrap_or_default();
    let message = err.message().unwrap_or(code).to_owned();
    let unsupported = matches!(code, "NotImplemented" | "MethodNotAllowed" | "NotSupported" | "UnsupportedOperation")
        || status_of(err).is_some_and(|s| s == 501 || s == 405);
    if unsupported {
        return Err(Outcome::NotSupported(if message.is_empty() { code.to_owned() } else { message }));
    }
    let missing = code.starts_with("NoSuch") || code.ends_with("NotFoundError") || code.ends_with("NotFound");
    if missing {
        return Ok(());
    }
    Err(Outcome::Failed(format!("{code}: {message}").trim_end_matches(": ").to_owned()))
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

async fn ensure_bucket(client: &Client, bucket: &str) -> Outcome {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => Outcome::AlreadySet,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) || status_of(&err) == Some(404) => {
            match client.create_bucket().bucket(bucket).send().await {
                Ok(_) => Outcome::Applied,
                Err(err) => classify(&err).err().unwrap_or(Outcome::Failed("cannot create the bucket".into())),
            }
        }
        Err(err) => classify(&err).err().unwrap_or(Outcome::Failed("the bucket cannot be reached".into())),
    }
}

async fn block_public_access(client: &Client, bucket: &str) -> Outcome {
    match client.get_public_access_block().bucket(bucket).send().await {
        Ok(out) => {
            let c = out.public_access_block_configuration();
            let all = c.is_some_and(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            });
            if all {
                return Outcome::AlreadySet;
            }
        }
        Err(err) => {
            if let Err(outcome) = classify(&err) {
                return outcome;
            }
        }
    }
    let config = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    applied(client.put_public_access_block().bucket(bucket).public_access_block_configuration(config).send().await)
}

async fn default_encryption(client: &Client, bucket: &str) -> Outcome {
    match client.get_bucket_encryption().bucket(bucket).send().await {
        Ok(out) => {
            let sse_s3 = out.server_side_encryption_configuration().is_some_and(|c| {
                c.rules().iter().any(|r| {
                    r.apply_server_side_encryption_by_default()
                        .is_some_and(|d| d.sse_algorithm() == &ServerSideEncryption::Aes256)
                })
            });
            if sse_s3 {
                return Outcome::AlreadySet;
            }
        }
        Err(err) => {
            if let Err(outcome) = classify(&err) {
                return outcome;
            }
        }
    }
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .expect("algorithm set"),
        )
        .build();
    let config = ServerSideEncryptionConfiguration::builder().rules(rule).build().expect("rules set");
    applied(client.put_bucket_encryption().bucket(bucket).server_side_encryption_configuration(config).send().await)
}

async fn versioning(client: &Client, wanted: &Wanted) -> Outcome {
    if !wanted.versioning {
        return Outcome::Skipped("AWS_S3_VERSIONING is not true".into());
    }
    match client.get_bucket_versioning().bucket(&wanted.bucket).send().await {
        Ok(out) if out.status() == Some(&BucketVersioningStatus::Enabled) => return Outcome::AlreadySet,
        Ok(_) => {}
        Err(err) => {
            if let Err(outcome) = classify(&err) {
                return outcome;
            }
        }
    }
    let config = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
    applied(client.put_bucket_versioning().bucket(&wanted.bucket).versioning_configuration(config).send().await)
}

/// The rule browsers need: the configured origins may PUT parts and objects,
/// GET, HEAD and DELETE, with any header, and read the ETag.
pub fn cors_rule(origins: &[Origin]) -> CorsRule {
    let mut builder = CorsRule::builder();
    for origin in origins {
        builder = builder.allowed_origins(origin.as_str());
    }
    for method in ["PUT", "GET", "HEAD", "DELETE"] {
        builder = builder.allowed_methods(method);
    }
    builder.allowed_headers("*").expose_headers("ETag").max_age_seconds(3600).build().expect("origins and methods set")
}

fn same_rule(a: &CorsRule, b: &CorsRule) -> bool {
    let sorted = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        v
    };
    sorted(a.allowed_origins()) == sorted(b.allowed_origins())
        && sorted(a.allowed_methods()) == sorted(b.allowed_methods())
        && sorted(a.allowed_headers()) == sorted(b.allowed_headers())
        && sorted(a.expose_headers()) == sorted(b.expose_headers())
}

async fn cors(client: &Client, wanted: &Wanted) -> Outcome {
    let rule = cors_rule(&wanted.cors_origins);
    match client.get_bucket_cors().bucket(&wanted.bucket).send().await {
        Ok(out) if out.cors_rules().len() == 1 && same_rule(&out.cors_rules()[0], &rule) => return Outcome::AlreadySet,
        Ok(_) => {}
        Err(err) => {
            if let Err(outcome) = classify(&err) {
                return outcome;
            }
        }
    }
    let config = CorsConfiguration::builder().cors_rules(rule).build().expect("rules set");
    applied(client.put_bucket_cors().bucket(&wanted.bucket).cors_configuration(config).send().await)
}

async fn lifecycle(client: &Client, wanted: &Wanted) -> Outcome {
    let days = wanted.abort_multipart_after_days;
    let mut rules = Vec::new();
    match client.get_bucket_lifecycle_configuration().bucket(&wanted.bucket).send().await {
        Ok(out) => {
            let ours = out.rules().iter().find(|r| r.id() == Some(LIFECYCLE_RULE_ID));
            let current =
                ours.and_then(|r| r.abort_incomplete_multipart_upload()).and_then(|a| a.days_after_initiation());
            if current == Some(days) && ours.is_some_and(|r| r.status() == &ExpirationStatus::Enabled) {
                return Outcome::AlreadySet;
            }
            rules.extend(out.rules().iter().filter(|r| r.id() != Some(LIFECYCLE_RULE_ID)).cloned());
        }
        Err(err) => {
            if let Err(outcome) = classify(&err) {
                return outcome;
            }
        }
    }
    let rule = LifecycleRule::builder()
        .id(LIFECYCLE_RULE_ID)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder().days_after_initiation(days).build(),
        )
        .build()
        .expect("status set");
    rules.push(rule);
    let config = BucketLifecycleConfiguration::builder().set_rules(Some(rules)).build().expect("rules set");
    applied(
        client.put_bucket_lifecycle_configuration().bucket(&wanted.bucket).lifecycle_configuration(config).send().await,
    )
}

fn applied<T, E: ProvideErrorMetadata>(result: Result<T, SdkError<E, HttpResponse>>) -> Outcome {
    match result {
        Ok(_) => Outcome::Applied,
        Err(err) => classify(&err).err().unwrap_or_else(|| Outcome::Failed("the store refused the setting".into())),
    }
}
