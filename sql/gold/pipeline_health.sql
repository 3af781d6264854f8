WITH runs AS (
  SELECT layer, table_name, max(committed_at) AS last_commit_at,
         max(CASE WHEN metadata IS NOT NULL THEN committed_at END) AS last_run_at
  FROM lakehouse_commits
  GROUP BY layer, table_name
),
marks AS (
  SELECT layer, table_name, max(versions_behind) AS versions_behind
  FROM lakehouse_watermarks
  GROUP BY layer, table_name
),
quarantine AS (
  SELECT substr(table_name, 1, length(table_name) - 11) AS table_name, rows AS quarantined_rows
  FROM lakehouse_tables
  WHERE layer = 'silver' AND right(table_name, 11) = '_quarantine'
),
job_last AS (
  SELECT run, max(CASE WHEN status = 'succeeded' THEN ended_at END) AS last_success_at
  FROM lakehouse_runs
  GROUP BY run
),
jobs AS (
  -- The layer a job kind writes: runs of `silver` jobs describe the silver tables.
  SELECT r.run AS layer,
         j.last_success_at,
         max(CASE WHEN r.status <> 'succeeded' THEN r.ended_at END) AS last_failure_at,
         sum(CASE WHEN r.status <> 'succeeded'
                   AND (j.last_success_at IS NULL OR r.ended_at > j.last_success_at)
                  THEN 1 ELSE 0 END) AS failures_since_success
  FROM lakehouse_runs r
  JOIN job_last j ON j.run = r.run
  GROUP BY r.run, j.last_success_at
),
dead AS (
  SELECT rows AS dead_letters FROM lakehouse_tables
  WHERE layer = 'bronze' AND table_name = 'bronze_dead_letters'
)
SELECT
  t.layer,
  t.table_name,
  t.version,
  t.rows,
  t.files,
  t.bytes,
  r.last_commit_at,
  r.last_run_at,
  CAST(to_unixtime(now()) - to_unixtime(r.last_commit_at) AS DOUBLE) AS lag_seconds,
  m.versions_behind,
  CASE WHEN t.table_name = 'bronze_events' THEN coalesce((SELECT max(dead_letters) FROM dead), 0) ELSE 0 END AS dead_letters,
  coalesce(q.quarantined_rows, 0)               AS quarantined_rows,
  jb.last_success_at,
  jb.last_failure_at,
  CAST(coalesce(jb.failures_since_success, 0) AS BIGINT) AS failures_since_success,
  arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))') AS checked_at
FROM lakehouse_tables t
LEFT JOIN runs r ON r.layer = t.layer AND r.table_name = t.table_name
LEFT JOIN marks m ON m.layer = t.layer AND m.table_name = t.table_name
LEFT JOIN quarantine q ON t.layer = 'silver' AND q.table_name = t.table_name
LEFT JOIN jobs jb ON jb.layer = t.layer
WHERE right(t.table_name, 11) <> '_quarantine' AND t.table_name <> 'bronze_dead_letters'
