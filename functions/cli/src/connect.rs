//! From command-line arguments to a migration: endpoints with their credentials and TLS, the
//! scope the URLs and `--db-map` give, and the target lease a writing run holds.

use ferry_engine::lease::Lease;
use ferry_engine::model::migration::Migration;
use ferry_engine::model::scope::LEASE_KEY;
use ferry_engine::{Endpoint, Error, Role, Secret, TlsSettings};

use crate::args::ConnectArgs;

/// Builds an endpoint from a URL, the environment's credentials and TLS options (a CA file,
/// `insecure`, a client certificate and key for mutual TLS).
pub fn endpoint(
    role: Role,
    url: &str,
    ca: Option<&std::path::Path>,
    insecure: bool,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Endpoint, Error> {
    let prefix = match role {
        Role::Source => "FERRY_SOURCE",
        Role::Target => "FERRY_TARGET",
    };
    let user = std::env::var(format!("{prefix}_USER"))
        .ok()
        .filter(|s| !s.is_empty());
    let password = std::env::var(format!("{prefix}_PASSWORD"))
        .ok()
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    let mut ep = Endpoint::parse(role, url)?.with_credentials(user, password);
    if ca.is_some() || insecure || identity.is_some() {
        let tls = ep.tls.get_or_insert_with(TlsSettings::default);
        tls.ca_file = ca.map(|p| p.to_path_buf());
        tls.insecure = insecure;
        if let Some((cert, key)) = identity {
            let read = |path: &std::path::Path, what: &str| {
                std::fs::read_to_string(path).map_err(|e| {
                    Error::InvalidInput(format!(
                        "cannot read --{role}-{what} {}: {e}",
                        path.display()
                    ))
                })
            };
            tls.client_cert_pem = Some(read(cert, "cert")?);
            tls.client_key_pem = Some(Secret::new(read(key, "key")?));
        }
        if url.trim_start().starts_with("redis://") {
            return Err(Error::InvalidInput(format!(
                "a CA file, client certificate or --{role}-insecure was given but the {role} URL is redis:// (plain); use rediss://"
            )));
        }
    }
    if insecure {
        tracing::warn!(
            "TLS certificate verification is OFF for the {role}: the connection can be intercepted"
        );
        eprintln!(
            "warning: TLS certificate verification is OFF for the {role} (--{role}-insecure)"
        );
    }
    Ok(ep)
}

pub async fn migration(c: &ConnectArgs) -> Result<Migration, Error> {
    let source = endpoint(
        Role::Source,
        &c.source,
        c.source_ca.as_deref(),
        c.source_insecure,
        c.source_cert.as_deref().zip(c.source_key.as_deref()),
    )?;
    let target = endpoint(
        Role::Target,
        &c.target,
        c.target_ca.as_deref(),
        c.target_insecure,
        c.target_cert.as_deref().zip(c.target_key.as_deref()),
    )?;
    #[cfg(feature = "aws")]
    let (source, target) = with_iam(c, source, target).await?;
    ferry_engine::net::set_reply_timeout(std::time::Duration::from_secs_f64(c.reply_timeout));
    Migration::scoped(source, target, &c.db_map)
}

/// The endpoints logging in with IAM tokens where `--source-iam` / `--target-iam` ask for it,
/// signed with the environment's AWS credentials.
#[cfg(feature = "aws")]
async fn with_iam(
    c: &ConnectArgs,
    source: Endpoint,
    target: Endpoint,
) -> Result<(Endpoint, Endpoint), Error> {
    if c.source_iam.is_none() && c.target_iam.is_none() {
        return Ok((source, target));
    }
    let aws = ferry_steps::Aws::from_env().await;
    let (region, credentials) = (aws.region, aws.credentials);
    let iam = |ep: Endpoint, auth: &Option<ferry_steps::iam::IamAuth>| match auth {
        Some(auth) => ferry_steps::aws::with_iam(ep, auth, region.clone(), credentials.clone()),
        None => Ok(ep),
    };
    Ok((iam(source, &c.source_iam)?, iam(target, &c.target_iam)?))
}

/// Takes the target's lease for a run that writes (see `ferry_engine::lease`), runs `work`,
/// and gives the lease back, whatever the outcome. A lease lost meanwhile fails the run: another
/// run may have written to the target.
pub async fn holding_lease<T>(
    m: &mut Migration,
    what: &str,
    work: impl AsyncFnOnce(&Migration) -> Result<T, Error>,
) -> Result<T, Error> {
    let lease = Lease::acquire(&m.target, what).await?;
    m.holds_lease = true;
    let result = work(m).await;
    let lost = lease.lost();
    if let Err(e) = lease.release().await {
        eprintln!(
            "warning: could not delete the target lease {LEASE_KEY} (it expires by itself): {e}"
        );
    }
    match result {
        Ok(_) if lost => Err(Error::TargetInUse(format!(
            "the target lease {LEASE_KEY} was taken over during the run: another run may have written to the target; compare again"
        ))),
        other => other,
    }
}
