SELECT
    toStartOfHour(started_at) AS hour,
    site,
    count() AS checks,
    countIf(status IN ('failed', 'timeout')) AS failed,
    countIf(status IN ('slow', 'degraded')) AS warned,
    quantileExact(0.5)(total_ms) AS p50_total_ms,
    quantileExact(0.9)(total_ms) AS p90_total_ms
FROM check_results FINAL
WHERE check_id = '${check}'
    AND kind != 'roundtrip'
    AND status != 'monitor_error'
    AND started_at >= $__fromTime AND started_at < $__toTime
GROUP BY hour, site
ORDER BY hour, site
