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
  arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))') AS checked_at
FROM lakehouse_tables t
LEFT JOIN runs r ON r.layer = t.layer AND r.table_name = t.table_name
LEFT JOIN marks m ON m.layer = t.layer AND m.table_name = t.table_name
LEFT JOIN quarantine q ON t.layer = 'silver' AND q.table_name = t.table_name
WHERE right(t.table_name, 11) <> '_quarantine' AND t.table_name <> 'bronze_dead_letters'
