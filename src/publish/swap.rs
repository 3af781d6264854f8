//! One mart's publish: stage, index, swap, record the version — see [`super`].

use std::time::Duration;

use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use futures::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use super::PublishTable;
use super::config::PostgresConfig;
use super::types::{append_csv, pg_type};
use crate::error::{Error, Result};

/// Bytes of CSV sent to `COPY` per message.
const COPY_CHUNK: usize = 1 << 20;
/// The table recording which Delta version of each mart Postgres holds.
pub const PUBLISHED_TABLE: &str = "_lakehouse_published";

/// What a publish attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The mart was loaded and swapped in, with this many rows.
    Loaded(u64),
    /// Postgres already holds this version (or a newer one).
    AlreadyCurrent,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn exec(conn: &mut PgConnection, mart: &str, sql: &str) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut *conn)
        .await
        .map_err(|e| Error::postgres(format!("{mart}: {}", first_line(sql)), e))?;
    Ok(())
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or(sql)
}

/// Connects with `[postgres]`'s timeouts.
pub async fn connect(config: &PostgresConfig) -> Result<PgConnection> {
    let url = config.url.as_deref().ok_or_else(|| Error::Config {
        file: "[postgres]".into(),
        message: "postgres.url is not set (LAKEHOUSE_POSTGRES__URL)".into(),
    })?;
    let connect = PgConnection::connect(url);
    let mut conn = tokio::time::timeout(Duration::from_millis(config.connect_timeout_ms), connect)
        .await
        .map_err(|_| {
            Error::Condition(format!(
                "postgres: connecting timed out after {} ms",
                config.connect_timeout_ms
            ))
        })?
        .map_err(|e| Error::postgres("connecting", e))?;
    exec(
        &mut conn,
        "session",
        &format!("SET lock_timeout = {}", config.lock_timeout_ms),
    )
    .await?;
    Ok(conn)
}

/// Identifies a Delta table beyond its location: its first commit holds the
/// table's unique metadata id, so a mart rebuilt from scratch at the same
/// location (or another lake publishing into the same schema) never passes
/// for the already published table with the same version number.
pub async fn table_identity(table: &DeltaTable, mart: &str) -> Result<String> {
    use std::hash::{Hash, Hasher};
    let first = table
        .log_store()
        .read_commit_entry(0)
        .await
        .map_err(|e| Error::delta(mart, e))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    first.as_deref().unwrap_or_default().hash(&mut hasher);
    Ok(format!("{}#{:016x}", table.table_url(), hasher.finish()))
}

/// The Delta table identity and version of `mart` Postgres holds.
pub async fn published_version(
    conn: &mut PgConnection,
    schema: &str,
    mart: &str,
) -> Result<Option<(Option<String>, i64)>> {
    let sql = format!(
        "SELECT delta_table, delta_version FROM {}.{} WHERE mart = $1",
        quote(schema),
        quote(PUBLISHED_TABLE)
    );
    sqlx::query_as::<_, (Option<String>, i64)>(AssertSqlSafe(sql))
        .bind(mart)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| Error::postgres(format!("{mart}: reading the published version"), e))
}

/// Publishes `table` (the mart's Delta table, at `version`) unless Postgres
/// already holds that version.
pub async fn publish_mart(
    config: &PostgresConfig,
    ctx: &SessionContext,
    table: &DeltaTable,
    spec: &PublishTable<'_>,
    version: Option<i64>,
) -> Result<Published> {
    let schema = config.schema.as_str();
    let mart = spec.name;
    let mut conn = connect(config).await?;
    // Postgres checks the database's CREATE privilege for `CREATE SCHEMA IF
    // NOT EXISTS` even when the schema exists: a role given only its own
    // schema (`CREATE SCHEMA gold AUTHORIZATION lakehouse`) must not need it.
    let schema_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| Error::postgres(format!("{mart}: looking up schema {schema}"), e))?;
    if !schema_exists {
        exec(
            &mut conn,
            mart,
            &format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)),
        )
        .await?;
    }
    exec(
        &mut conn,
        mart,
        &format!(
            "CREATE TABLE IF NOT EXISTS {}.{} (mart text PRIMARY KEY, delta_table text, \
             delta_version bigint NOT NULL, rows bigint NOT NULL, published_at timestamptz NOT NULL DEFAULT now())",
            quote(schema),
            quote(PUBLISHED_TABLE)
        ),
    )
    .await?;
    // Schemas published by earlier releases lack the identity column.
    exec(
        &mut conn,
        mart,
        &format!(
            "ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS delta_table text",
            quote(schema),
            quote(PUBLISHED_TABLE)
        ),
    )
    .await?;
    let identity = table_identity(table, mart).await?;
    // One publisher per mart at a time (two runs racing would drop each
    // other's staging table); released when the connection closes.
    sqlx::query(AssertSqlSafe(
        "SELECT pg_advisory_lock(hashtext($1))".to_string(),
    ))
    .bind(format!("lakehouse-publish:{schema}.{mart}"))
    .execute(&mut conn)
    .await
    .map_err(|e| Error::postgres(format!("{mart}: waiting for another publisher"), e))?;
    let held = published_version(&mut conn, schema, mart).await?;
    if let (Some((Some(held_table), held)), Some(version)) = (held, version)
        && held_table == identity
        && held >= version
    {
        return Ok(Published::AlreadyCurrent);
    }

    // The rows, in the Delta table's column order.
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| Error::delta(mart, e))?;
    let provider = table.table_provider().await?;
    let snapshot = table.snapshot().map_err(|e| Error::delta(mart, e))?;
    let columns: Vec<String> = snapshot
        .schema()
        .fields()
        .map(|f| f.name().clone())
        .collect();
    let frame = ctx
        .read_table(provider)?
        .select_columns(&columns.iter().map(String::as_str).collect::<Vec<_>>())?;
    let arrow_schema = frame.schema().as_arrow().clone();

    let target = format!("{}.{}", quote(schema), quote(mart));
    let staging_name = format!("{mart}__staging");
    let staging = format!("{}.{}", quote(schema), quote(&staging_name));
    let mut defs = Vec::new();
    for field in arrow_schema.fields() {
        let not_null = if spec.keys.contains(field.name()) {
            " NOT NULL"
        } else {
            ""
        };
        defs.push(format!(
            "{} {}{not_null}",
            quote(field.name()),
            pg_type(field.name(), field.data_type())
                .map_err(|e| Error::config(spec.file, e.to_string()))?
        ));
    }
    exec(&mut conn, mart, &format!("DROP TABLE IF EXISTS {staging}")).await?;
    exec(
        &mut conn,
        mart,
        &format!("CREATE TABLE {staging} ({})", defs.join(", ")),
    )
    .await?;

    let column_list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let copy = format!(
        "COPY {staging} ({}) FROM STDIN (FORMAT csv)",
        column_list.join(", ")
    );
    let mut stream = frame.execute_stream().await?;
    let mut writer = conn
        .copy_in_raw(&copy)
        .await
        .map_err(|e| Error::postgres(format!("{mart}: COPY"), e))?;
    let mut buffer = Vec::with_capacity(COPY_CHUNK + 4096);
    let mut failure = None;
    while let Some(batch) = stream.next().await {
        let step = match batch {
            Ok(batch) => append_csv(&batch, &mut buffer),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = step {
            failure = Some(e);
            break;
        }
        if buffer.len() >= COPY_CHUNK {
            writer
                .send(std::mem::take(&mut buffer))
                .await
                .map_err(|e| Error::postgres(format!("{mart}: COPY"), e))?;
        }
    }
    if let Some(e) = failure {
        // Leave the connection usable; the staging table is dropped next time.
        let _ = writer.abort("reading the Delta mart failed").await;
        return Err(e);
    }
    if !buffer.is_empty() {
        writer
            .send(buffer)
            .await
            .map_err(|e| Error::postgres(format!("{mart}: COPY"), e))?;
    }
    let rows = writer
        .finish()
        .await
        .map_err(|e| Error::postgres(format!("{mart}: COPY"), e))?;

    let keys: Vec<String> = spec.keys.iter().map(|k| quote(k)).collect();
    exec(
        &mut conn,
        mart,
        &format!(
            "ALTER TABLE {staging} ADD CONSTRAINT {} PRIMARY KEY ({})",
            quote(&format!("{staging_name}_pkey")),
            keys.join(", ")
        ),
    )
    .await?;
    for (i, index) in spec.indexes.iter().enumerate() {
        let cols: Vec<String> = index.iter().map(|c| quote(c)).collect();
        exec(
            &mut conn,
            mart,
            &format!(
                "CREATE INDEX {} ON {staging} ({})",
                quote(&format!("{staging_name}_idx{i}")),
                cols.join(", ")
            ),
        )
        .await?;
    }
    exec(&mut conn, mart, &format!("ANALYZE {staging}")).await?;

    // The swap: readers see the old table until this commits, then the new one.
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| Error::postgres(format!("{mart}: BEGIN"), e))?;
    let mut statements = vec![
        format!("DROP TABLE IF EXISTS {target}"),
        format!("ALTER TABLE {staging} RENAME TO {}", quote(mart)),
        format!(
            "ALTER TABLE {target} RENAME CONSTRAINT {} TO {}",
            quote(&format!("{staging_name}_pkey")),
            quote(&format!("{mart}_pkey"))
        ),
    ];
    for i in 0..spec.indexes.len() {
        statements.push(format!(
            "ALTER INDEX {}.{} RENAME TO {}",
            quote(schema),
            quote(&format!("{staging_name}_idx{i}")),
            quote(&format!("{mart}_idx{i}"))
        ));
    }
    let comment = format!(
        "{} (lakehouse gold mart, Delta version {})",
        spec.description.unwrap_or(mart),
        version.map_or("none".into(), |v| v.to_string())
    );
    statements.push(format!(
        "COMMENT ON TABLE {target} IS {}",
        literal(&comment)
    ));
    for sql in &statements {
        sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::postgres(format!("{mart}: swap: {sql}"), e))?;
    }
    let record = format!(
        "INSERT INTO {}.{} (mart, delta_table, delta_version, rows, published_at) VALUES ($1, $2, $3, $4, now()) \
         ON CONFLICT (mart) DO UPDATE SET delta_table = EXCLUDED.delta_table, delta_version = EXCLUDED.delta_version, \
         rows = EXCLUDED.rows, published_at = EXCLUDED.published_at",
        quote(schema),
        quote(PUBLISHED_TABLE)
    );
    sqlx::query(AssertSqlSafe(record))
        .bind(mart)
        .bind(&identity)
        .bind(version.unwrap_or(-1))
        .bind(rows as i64)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::postgres(format!("{mart}: recording the published version"), e))?;
    tx.commit()
        .await
        .map_err(|e| Error::postgres(format!("{mart}: COMMIT"), e))?;
    Ok(Published::Loaded(rows))
}
