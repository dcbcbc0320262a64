SELECT
    toStartOfMonth(opened_at) AS month,
    check_id,
    severity,
    count() AS incidents,
    count(resolved_ms) AS resolved,
    round(avg((resolved_ms - opened_at_ms) / 1000), 1) AS avg_resolve_s,
    max((resolved_ms - opened_at_ms) / 1000) AS max_resolve_s
FROM
(
    SELECT
        incident_id,
        check_id,
        severity,
        opened_at,
        opened_at_ms,
        maxIf(resolved_at_ms, transition = 'resolved') AS resolved_ms
    FROM incidents FINAL
    WHERE opened_at >= $__fromTime AND opened_at < $__toTime
    GROUP BY incident_id, check_id, severity, opened_at, opened_at_ms
)
GROUP BY month, check_id, severity
ORDER BY month, check_id, severity
