SELECT
    opened_at AS time,
    maxIf(resolved_at, transition = 'resolved') AS timeEnd,
    concat(toString(severity), ': ', anyIf(reason, transition = 'open'),
        if(countIf(transition = 'resolved') > 0, concat(' (resolved: ', anyIf(reason, transition = 'resolved'), ')'), '')) AS text,
    incident_id
FROM incidents FINAL
WHERE check_id = '${check}'
    AND opened_at >= $__fromTime AND opened_at < $__toTime
GROUP BY incident_id, opened_at, severity
ORDER BY time, incident_id
