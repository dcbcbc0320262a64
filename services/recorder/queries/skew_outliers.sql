SELECT
    started_at,
    check_id,
    site,
    test_id,
    skew_ms,
    outgoing_leg_ms,
    incoming_leg_ms,
    skew_suspect
FROM
(
    SELECT started_at, check_id, site, test_id, skew_ms, outgoing_leg_ms, incoming_leg_ms, skew_suspect
    FROM check_results FINAL
    WHERE started_at >= $__fromTime AND started_at < $__toTime
)
WHERE skew_suspect = 1 OR abs(skew_ms) >= 60000
ORDER BY started_at, check_id, site, test_id
LIMIT 1000
