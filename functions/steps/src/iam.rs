//! IAM authentication to ElastiCache (Valkey 7.2+, Redis OSS 7.0+): the password is a SigV4
//! presigned request, `<cache>/?Action=connect&User=<user>[&ResourceType=ServerlessCache]&X-Amz-…`,
//! valid 15 minutes, made with the environment's or the task role's credentials. A fresh one is
//! made for every connection ([`ferry_engine::PasswordSource`]); ElastiCache closes an IAM
//! connection after 12 hours, so the engine renews long-lived ones before `renew_secs`.
//!
//! AWS: <https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/auth-iam.html>

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use ferry_engine::{Error, PasswordSource, Secret};
use serde::{Deserialize, Serialize};

/// How long a token is valid (AWS's limit for ElastiCache IAM tokens).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// Renewal before ElastiCache's 12-hour limit on an IAM connection.
const DEFAULT_RENEW_SECS: u64 = 11 * 3600;

fn default_renew_secs() -> u64 {
    DEFAULT_RENEW_SECS
}

/// Which ElastiCache user and cache to sign for. Not a credential: it may be in the execution
/// input (`source.iam`, `target.iam`) and on the command line (`--source-iam`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamAuth {
    /// The ElastiCache user (an IAM-enabled user's id and name are the same).
    pub user_id: String,
    /// The replication group id, or the serverless cache's name.
    pub cache_name: String,
    /// A serverless cache (the token names `ResourceType=ServerlessCache`).
    #[serde(default)]
    pub serverless: bool,
    /// The cache's region (default: the environment's, `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// Connections are renewed (a new connection, a new token) after this many seconds.
    #[serde(default = "default_renew_secs")]
    pub renew_secs: u64,
}

impl FromStr for IamAuth {
    type Err = String;

    /// `user=<id>,cache=<name>[,region=<r>][,serverless][,renew_secs=<n>]`.
    fn from_str(s: &str) -> Result<IamAuth, String> {
        let (mut user, mut cache, mut region) = (None, None, None);
        let (mut serverless, mut renew_secs) = (false, DEFAULT_RENEW_SECS);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("user", v)) => user = Some(v.to_string()),
                Some(("cache", v)) => cache = Some(v.to_string()),
                Some(("region", v)) => region = Some(v.to_string()),
                Some(("renew_secs", v)) => {
                    renew_secs = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("renew_secs '{v}' is not a positive number"))?
                }
                None if part == "serverless" => serverless = true,
                _ => {
                    return Err(format!(
                        "'{part}' is not user=, cache=, region=, serverless or renew_secs="
                    ))
                }
            }
        }
        Ok(IamAuth {
            user_id: user.ok_or("user=<ElastiCache user id> is missing")?,
            cache_name: cache.ok_or("cache=<replication group or serverless cache> is missing")?,
            serverless,
            region,
            renew_secs,
        })
    }
}

/// The token for `auth` in `region`, signed with `credentials` at `now`.
pub fn token(
    auth: &IamAuth,
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<String, String> {
    let mut url = url::Url::parse(&format!("http://{}/", auth.cache_name))
        .map_err(|e| format!("cache name '{}': {e}", auth.cache_name))?;
    url.query_pairs_mut()
        .append_pair("Action", "connect")
        .append_pair("User", &auth.user_id);
    if auth.serverless {
        url.query_pairs_mut()
            .append_pair("ResourceType", "ServerlessCache");
    }
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("elasticache")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::empty(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    for (name, value) in instructions.params() {
        url.query_pairs_mut().append_pair(name, value);
    }
    Ok(url.as_str()["http://".len()..].to_string())
}

/// Makes a token per connection from a credentials provider (environment, task role).
pub struct IamPassword {
    auth: IamAuth,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl IamPassword {
    /// For `auth`, with the region and credentials of the AWS configuration when `auth` names
    /// no region.
    pub fn new(
        auth: IamAuth,
        region: Option<String>,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<IamPassword, Error> {
        let region = auth.region.clone().or(region).ok_or_else(|| {
            Error::InvalidInput(format!(
                "IAM auth for {}: no region (set region= or AWS_REGION)",
                auth.cache_name
            ))
        })?;
        let credentials = credentials.ok_or_else(|| {
            Error::InvalidInput(format!(
                "IAM auth for {}: no AWS credentials configured",
                auth.cache_name
            ))
        })?;
        Ok(IamPassword {
            auth,
            region,
            credentials,
        })
    }
}

impl PasswordSource for IamPassword {
    fn password(&self) -> Pin<Box<dyn Future<Output = ferry_engine::Result<Secret>> + Send + '_>> {
        Box::pin(async move {
            let failed = |reason: String| Error::AuthFailed {
                addr: self.auth.cache_name.clone(),
                reason: format!("IAM token for user {}: {reason}", self.auth.user_id),
            };
            let credentials = self
                .credentials
                .provide_credentials()
                .await
                .map_err(|e| failed(format!("no AWS credentials: {e}")))?;
            let token =
                token(&self.auth, &self.region, &credentials, SystemTime::now()).map_err(failed)?;
            Ok(Secret::new(token))
        })
    }

    fn renew_after(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.auth.renew_secs))
    }

    fn describe(&self) -> String {
        format!(
            "IAM user {} on {} ({})",
            self.auth.user_id, self.auth.cache_name, self.region
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(token: &str) -> std::collections::BTreeMap<String, String> {
        url::Url::parse(&format!("http://{token}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The token's shape as ElastiCache documents it; the signature itself is the SDK's.
    #[test]
    fn a_token_is_a_presigned_connect_request() {
        let auth: IamAuth = "user=ferry-iam,cache=my-group,region=eu-west-1"
            .parse()
            .unwrap();
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), None, "t");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let token = token(&auth, "eu-west-1", &creds, at).unwrap();
        assert!(
            token.starts_with("my-group/?Action=connect&User=ferry-iam&"),
            "{token}"
        );
        let q = query(&token);
        assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(q["X-Amz-Expires"], "900");
        assert_eq!(q["X-Amz-SignedHeaders"], "host");
        assert_eq!(q["X-Amz-Date"], "20261118T110640Z");
        assert_eq!(
            q["X-Amz-Credential"],
            "AKIDEXAMPLE/20261118/eu-west-1/elasticache/aws4_request"
        );
        assert_eq!(q["X-Amz-Security-Token"], "session");
        assert_eq!(q["X-Amz-Signature"].len(), 64);
        assert!(!q.contains_key("ResourceType"));
        assert!(
            !token.contains("secret"),
            "the secret key never appears: {token}"
        );
        // Deterministic for the same instant; another instant signs differently.
        assert_eq!(token, super::token(&auth, "eu-west-1", &creds, at).unwrap());
        let later = super::token(&auth, "eu-west-1", &creds, at + Duration::from_secs(1)).unwrap();
        assert_ne!(query(&later)["X-Amz-Signature"], q["X-Amz-Signature"]);
    }

    #[test]
    fn a_serverless_token_names_its_resource_type() {
        let auth: IamAuth = "user=u,cache=my-cache,serverless".parse().unwrap();
        let creds = Credentials::new("AKID", "secret", None, None, "t");
        let token = token(&auth, "us-east-1", &creds, SystemTime::now()).unwrap();
        assert_eq!(query(&token)["ResourceType"], "ServerlessCache");
        assert!(!query(&token).contains_key("X-Amz-Security-Token"));
    }

    #[test]
    fn parses_the_command_line_form() {
        let a: IamAuth = "user=u, cache=c, region=r, renew_secs=60".parse().unwrap();
        assert_eq!((a.user_id.as_str(), a.cache_name.as_str()), ("u", "c"));
        assert_eq!(
            (a.region.as_deref(), a.renew_secs, a.serverless),
            (Some("r"), 60, false)
        );
        assert!("cache=c".parse::<IamAuth>().unwrap_err().contains("user="));
        assert!("user=u,cache=c,color=red".parse::<IamAuth>().is_err());
        assert!("user=u,cache=c,renew_secs=0".parse::<IamAuth>().is_err());
    }
}
