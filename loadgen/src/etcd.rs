//! The same operations against etcd through its v3 gRPC API (etcd-client).

use etcd_client::{Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse};

pub async fn connect(endpoint: &str) -> Result<KvClient, String> {
    let client = etcd_client::Client::connect([format!("http://{endpoint}")], None)
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    Ok(client.kv_client())
}

pub async fn put(kv: &mut KvClient, key: &[u8], value: &[u8]) -> Result<(), String> {
    kv.put(key, value, None).await.map(drop).map_err(|e| e.to_string())
}

pub async fn get(kv: &mut KvClient, key: &[u8], serializable: bool) -> Result<(), String> {
    let options =
        if serializable { GetOptions::new().with_serializable() } else { GetOptions::new() };
    kv.get(key, Some(options)).await.map(drop).map_err(|e| e.to_string())
}

pub async fn range(
    kv: &mut KvClient,
    key: &[u8],
    limit: i64,
    serializable: bool,
) -> Result<(), String> {
    let mut options = GetOptions::new().with_from_key().with_limit(limit);
    if serializable {
        options = options.with_serializable();
    }
    kv.get(key, Some(options)).await.map(drop).map_err(|e| e.to_string())
}

/// Kubernetes' optimistic update: put if the mod revision is still the one
/// we know, else read the current one. Returns the key's new mod revision
/// and whether the update went through.
pub async fn txn(
    kv: &mut KvClient,
    key: &[u8],
    value: &[u8],
    known: i64,
) -> Result<(i64, bool), String> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, known)])
        .and_then([TxnOp::put(key, value, None)])
        .or_else([TxnOp::get(key, None)]);
    let response = kv.txn(txn).await.map_err(|e| e.to_string())?;
    if response.succeeded() {
        return Ok((response.header().map_or(0, |h| h.revision()), true));
    }
    let current = match response.op_responses().first() {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map_or(0, |kv| kv.mod_revision()),
        _ => 0,
    };
    Ok((current, false))
}
