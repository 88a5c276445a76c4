//! The AWS side of a step: SDK clients, built once per container, and credentials read from
//! Secrets Manager, cached per container (a warm Lambda does not fetch them again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ferry_engine::{Endpoint, Role, Secret};
use serde::Deserialize;

use crate::contracts::MigrationInput;
use crate::error::StepError;
use crate::iam::{IamAuth, IamPassword};

/// The SDK clients a step may use.
#[derive(Clone)]
pub struct Aws {
    /// Snapshots, parameter groups.
    pub elasticache: aws_sdk_elasticache::Client,
    /// Credentials.
    pub secrets: aws_sdk_secretsmanager::Client,
    /// Task tokens (the tail's answers) and executions (the control CLI).
    pub sfn: aws_sdk_sfn::Client,
    /// The tail's control queue.
    pub sqs: aws_sdk_sqs::Client,
    /// The deployed stack's outputs (the control CLI).
    pub cloudformation: aws_sdk_cloudformation::Client,
    /// The tail's Fargate task (the control CLI checks it is alive).
    pub ecs: aws_sdk_ecs::Client,
    /// The shard plans the Distributed Maps read (`plans`).
    pub s3: aws_sdk_s3::Client,
    /// The role's credentials and region, for IAM auth tokens (`iam`).
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    pub region: Option<String>,
}

impl Aws {
    /// Clients from the environment (the Lambda's role; `AWS_ENDPOINT_URL` for an emulator).
    pub async fn from_env() -> Aws {
        Aws::from_config(&aws_config::load_from_env().await)
    }

    /// Clients from an explicit configuration (tests point it at an emulator).
    pub fn from_config(config: &aws_config::SdkConfig) -> Aws {
        Aws {
            elasticache: aws_sdk_elasticache::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            cloudformation: aws_sdk_cloudformation::Client::new(config),
            ecs: aws_sdk_ecs::Client::new(config),
            s3: s3_client(config),
            credentials: config.credentials_provider(),
            region: config.region().map(|r| r.to_string()),
        }
    }
}

/// An S3 client; path-style addressing where an endpoint URL is set (an emulator on a
/// loopback address has no per-bucket host names).
fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(config.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// The JSON a credentials secret holds. Other fields (host, port…) are allowed and ignored.
#[derive(Deserialize)]
struct SecretJson {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// ElastiCache's name for a password.
    #[serde(default)]
    auth_token: Option<String>,
    /// A CA bundle for `rediss://` endpoints with a private CA.
    #[serde(default)]
    ca_pem: Option<String>,
    /// A client certificate (PEM) for servers that require mutual TLS, with its key.
    #[serde(default)]
    client_cert_pem: Option<String>,
    #[serde(default)]
    client_key_pem: Option<String>,
}

/// Credentials read from one secret.
#[derive(Clone)]
struct Credentials {
    username: Option<String>,
    password: Option<Secret>,
    ca_pem: Option<String>,
    client_cert_pem: Option<String>,
    client_key_pem: Option<Secret>,
}

fn cache() -> &'static Mutex<HashMap<String, Credentials>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Credentials>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

async fn credentials(aws: &Aws, arn: &str) -> Result<Credentials, StepError> {
    if let Some(c) = cache().lock().expect("cache").get(arn) {
        return Ok(c.clone());
    }
    let out = aws
        .secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| StepError::from_aws("GetSecretValue", e))?;
    let text = out
        .secret_string()
        .ok_or_else(|| StepError::invalid(format!("secret {arn} has no string value")))?;
    let json: SecretJson = serde_json::from_str(text).map_err(|_| {
        StepError::invalid(format!(
            "secret {arn} is not JSON of the form {{\"username\", \"password\" or \"auth_token\", \"ca_pem\", \"client_cert_pem\", \"client_key_pem\"}}"
        ))
    })?;
    let creds = Credentials {
        username: json.username.filter(|u| !u.is_empty()),
        password: json.password.or(json.auth_token).map(Secret::new),
        ca_pem: json.ca_pem,
        client_cert_pem: json.client_cert_pem,
        client_key_pem: json.client_key_pem.map(Secret::new),
    };
    cache()
        .lock()
        .expect("cache")
        .insert(arn.to_string(), creds.clone());
    Ok(creds)
}

/// The endpoint of one side, with its credentials from Secrets Manager.
async fn endpoint(
    aws: &Aws,
    role: Role,
    url: &str,
    secret_arn: Option<&str>,
    iam: Option<&IamAuth>,
) -> Result<Endpoint, StepError> {
    let mut ep = Endpoint::parse(role, url)?;
    if let Some(arn) = secret_arn {
        let c = credentials(aws, arn).await?;
        ep = ep.with_credentials(c.username, c.password);
        if let Some(tls) = ep.tls.as_mut() {
            tls.ca_pem = c.ca_pem;
            tls.client_cert_pem = c.client_cert_pem;
            tls.client_key_pem = c.client_key_pem;
        }
    }
    if let Some(auth) = iam {
        ep = with_iam(ep, auth, aws.region.clone(), aws.credentials.clone())?;
    }
    Ok(ep)
}

/// `ep` logging in with IAM tokens for `auth`, signed with `credentials` (the role's).
pub fn with_iam(
    ep: Endpoint,
    auth: &IamAuth,
    region: Option<String>,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
) -> Result<Endpoint, ferry_engine::Error> {
    let password = IamPassword::new(auth.clone(), region, credentials)?;
    Ok(ep.with_changing_password(
        auth.user_id.clone(),
        ferry_engine::ChangingPassword(Arc::new(password)),
    ))
}

/// Both endpoints of a migration.
pub async fn endpoints(aws: &Aws, m: &MigrationInput) -> Result<(Endpoint, Endpoint), StepError> {
    let source = endpoint(
        aws,
        Role::Source,
        &m.source.endpoint,
        m.source.secret_arn.as_deref(),
        m.source.iam.as_ref(),
    )
    .await?;
    let target = endpoint(
        aws,
        Role::Target,
        &m.target.endpoint,
        m.target.secret_arn.as_deref(),
        m.target.iam.as_ref(),
    )
    .await?;
    Ok((source, target))
}

/// What every step handler gets: the clients and the invocation's deadline.
#[derive(Clone)]
pub struct Ctx {
    /// SDK clients.
    pub aws: Arc<Aws>,
    /// When the Lambda will be stopped (none outside Lambda).
    pub deadline: Option<std::time::Instant>,
}
