SELECT
    started_at,
    check_id,
    site,
    status,
    summary,
    first_hop,
    queue_id,
    bounce_status,
    bounce_remote_mta
FROM
(
    SELECT started_at, check_id, site, status, summary, first_hop, queue_id, bounce_status, bounce_remote_mta
    FROM check_results FINAL
    WHERE started_at >= $__fromTime AND started_at < $__toTime
)
WHERE status IN ('timeout', 'failed')
ORDER BY started_at DESC, check_id, site
LIMIT 1000
