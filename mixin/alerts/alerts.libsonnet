// Alert rules of cognito-import-exporter; the selectors and thresholds come from _config.
//
// Per-job series exist only for active jobs and jobs finished in the last 24 hours. A pool whose
// collection fails keeps serving the values of its last good one (growing stale, which
// CognitoUserImportDataStale watches), but series still vanish while Prometheus cannot scrape
// the exporter, and after a restart without --storage.path until the pool is read again. The
// job alerts read them through last_over_time(...[15m]), so such a gap shorter than 15 minutes
// does not resolve and re-fire every job alert; a job that has since been seen in another
// status ends its alert at once.
//
// Each alert's runbook is a section of the README, whose heading is the alert's name; its
// runbook_url annotation is that section's address under _config.runbookUrlBase.
{
  local withRunbookUrl(rule) = rule {
    annotations+: { runbook_url: '%s#%s' % [$._config.runbookUrlBase, std.asciiLower(rule.alert)] },
  },

  prometheusAlerts+:: {
    groups+: std.map(function(group) group { rules: std.map(withRunbookUrl, super.rules) }, [
      {
        name: "cognito-user-import-jobs",
        rules: [
        {
          alert: "CognitoUserImportJobFailed",
          expr: |||
            max by (user_pool_id, job_id, job_name) (
              last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s, status="Failed"}[15m])
            )
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "A user import job failed.",
            description: "Cognito reports user import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} as Failed. Users in its CSV file after the point of failure were not imported. The alert clears 24 hours after the job completed, when the job leaves the exporter's per-job series.",
          },
        },
        {
          alert: "CognitoUserImportPoolFailedJobsIncreased",
          expr: |||
            max by (user_pool_id) (
              delta(cognito_user_import_jobs{%(cognitoImportSelector)s, status="Failed"}[1h])
            ) > 0
            unless on (user_pool_id)
              last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s, status="Failed"}[15m])
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "More user import jobs failed in a user pool.",
            description: "The number of Failed import jobs in user pool {{ $labels.user_pool_id }} rose in the last hour, but no recent failed job is among the exporter's per-job series, so CognitoUserImportJobFailed cannot name it. This happens when more than scrape.max_jobs_per_pool newer jobs crowd it out, or when that setting is 0.",
          },
        },
        {
          alert: "CognitoUserImportJobUsersFailed",
          expr: |||
            (
              max by (user_pool_id, job_id) (
                last_over_time(cognito_user_import_job_users{%(cognitoImportSelector)s, outcome="failed"}[15m])
              ) > 0
            )
            * on (user_pool_id, job_id) group_left (job_name)
              max by (user_pool_id, job_id, job_name) (
                last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s}[15m])
              )
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "A user import job could not import some of its users.",
            description: "Import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} could not import {{ $value }} of the users in its CSV file; the job itself went on with the other users. Those users do not exist in the pool.",
          },
        },
        {
          alert: "CognitoUserImportJobUsersSkipped",
          expr: |||
            (
              max by (user_pool_id, job_id) (
                last_over_time(cognito_user_import_job_users{%(cognitoImportSelector)s, outcome="skipped"}[15m])
              ) > 0
            )
            * on (user_pool_id, job_id) group_left (job_name)
              max by (user_pool_id, job_id, job_name) (
                last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s}[15m])
              )
          ||| % $._config,
          'for': "0m",
          labels: { severity: "info" },
          annotations: {
            summary: "A user import job skipped some of its users.",
            description: "Import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} skipped {{ $value }} of the users in its CSV file. Cognito skips a user that already exists in the pool; the existing user is left unchanged.",
          },
        },
        {
          alert: "CognitoUserImportJobStuck",
          expr: |||
            (
              (
                time()
                - max by (user_pool_id, job_id) (
                    last_over_time(cognito_user_import_job_started_timestamp_seconds{%(cognitoImportSelector)s}[15m])
                    or last_over_time(cognito_user_import_job_created_timestamp_seconds{%(cognitoImportSelector)s}[15m])
                  )
              ) > %(jobStuckHours)s * 3600
            )
            * on (user_pool_id, job_id) group_left (job_name)
              max by (user_pool_id, job_id, job_name) (
                last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s, status=~"Pending|InProgress"}[15m])
              )
            unless on (user_pool_id, job_id)
              cognito_user_import_job_info{%(cognitoImportSelector)s, status!~"Pending|InProgress"}
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "A user import job has been running for more than %(jobStuckHours)s hours." % $._config,
            description: "Import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} is still Pending or InProgress {{ $value | humanizeDuration }} after it was started (or created, when Cognito gives no start date). Most jobs finish within minutes to a few hours; a job this old is probably stuck.",
          },
        },
        {
          alert: "CognitoUserImportJobExpiring",
          expr: |||
            (
              (
                time()
                - max by (user_pool_id, job_id) (
                    last_over_time(cognito_user_import_job_created_timestamp_seconds{%(cognitoImportSelector)s}[15m])
                  )
              ) > %(jobExpiringHours)s * 3600
            )
            * on (user_pool_id, job_id) group_left (job_name)
              max by (user_pool_id, job_id, job_name) (
                last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s, status="Created"}[15m])
              )
            unless on (user_pool_id, job_id)
              cognito_user_import_job_info{%(cognitoImportSelector)s, status!="Created"}
          ||| % $._config,
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "A user import job is about to expire without having started.",
            description: "Import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} is still in status Created {{ $value | humanizeDuration }} after it was created. Cognito expires a job that is not started within 24 to 48 hours of its creation (status Expired), and its users are then never imported.",
          },
        },
        ] + (if std.length($._config.failedReasonsToAlertOn) == 0 then [] else [
        {
          alert: "CognitoUserImportJobUsersFailedForReason",
          expr: |||
            (
              max by (user_pool_id, job_id, reason) (
                last_over_time(cognito_user_import_job_reason_users{%(cognitoImportSelector)s, outcome="failed", reason=~"%(reasons)s"}[15m])
              ) > 0
            )
            * on (user_pool_id, job_id) group_left (job_name)
              max by (user_pool_id, job_id, job_name) (
                last_over_time(cognito_user_import_job_info{%(cognitoImportSelector)s}[15m])
              )
          ||| % ($._config { reasons: std.join("|", $._config.failedReasonsToAlertOn) }),
          'for': "0m",
          labels: { severity: "warning" },
          annotations: {
            summary: "Users of a user import job failed for a reason chosen to alert on.",
            description: "The log of import job {{ $labels.job_name }} ({{ $labels.job_id }}) in user pool {{ $labels.user_pool_id }} says {{ $value }} of its users failed with reason {{ $labels.reason }}. The exporter reads the reasons of pools with reasons: true; the status page shows example lines of the log.",
          },
        },
        ]),
      },
      {
        name: "cognito-import-exporter",
        rules: [
        {
          alert: "CognitoUserImportScrapeFailing",
          // while it fails, a pool of a large region is collected every 3/4 of
          // scrape.max_staleness: a replica region's errors are looked for over an hour, which
          // leaves such a pool out for a max_staleness of up to 100m (15m would up to 40m)
          expr: |||
            cognito_user_import_scrape_success{%(cognitoImportSelector)s} == 0
            unless on (user_pool_id)
              increase(cognito_user_import_api_errors_total{%(cognitoImportSelector)s, error_code="OperationNotEnabled"}[1h]) > 0
          ||| % $._config,
          'for': "15m",
          labels: { severity: "warning" },
          annotations: {
            summary: "The exporter cannot collect a user pool's import jobs.",
            description: "Every collection of user pool {{ $labels.user_pool_id }} by {{ $labels.instance }} has failed for at least 15 minutes, so its import job metrics keep the values of its last successful collection and the job alerts see nothing newer. Errors in the last 15 minutes, by code: {{ range $i, $error := printf \"sum by (error_code) (increase(cognito_user_import_api_errors_total{user_pool_id=%q}[15m])) > 0\" $labels.user_pool_id | query | sortByLabel \"error_code\" }}{{ if $i }}, {{ end }}{{ $error.Labels.error_code }} ({{ printf \"%.0f\" $error.Value }}){{ else }}none recorded{{ end }}.",
          },
        },
        {
          alert: "CognitoUserImportDataStale",
          expr: |||
            time() - cognito_user_import_scrape_last_success_timestamp_seconds{%(cognitoImportSelector)s}
              > %(staleDataSeconds)s
          ||| % $._config,
          'for': "5m",
          labels: { severity: "warning" },
          annotations: {
            summary: "A user pool's import job metrics are stale.",
            description: "The import job metrics of user pool {{ $labels.user_pool_id }} on {{ $labels.instance }} are {{ $value | humanizeDuration }} old: that long ago was its last successful collection, so the job alerts see nothing newer for it. Either its collections fail (then CognitoUserImportScrapeFailing fires too) or the exporter's request budget cannot refresh every pool of its account and region within scrape.max_staleness (cognito_user_import_refresh_behind_seconds above 0).",
          },
        },
        {
          alert: "CognitoUserImportApiThrottled",
          expr: |||
            sum by (user_pool_id) (
              increase(cognito_user_import_api_errors_total{%(cognitoImportSelector)s, error_code="TooManyRequests"}[15m])
            ) > 0
          ||| % $._config,
          'for': "15m",
          labels: { severity: "warning" },
          annotations: {
            summary: "Cognito is throttling the exporter's requests.",
            description: "Cognito answered {{ printf \"%.0f\" $value }} requests for user pool {{ $labels.user_pool_id }} with TooManyRequests in the last 15 minutes, and has kept doing so for at least 15 minutes. Cognito's request-rate quotas are per account and Region and are shared with every other caller there, so the exporter's requests can slow down the applications that use the same quota, and collections may fail.",
          },
        },
        {
          alert: "CognitoUserImportExporterDown",
          expr: |||
            up{%(cognitoImportSelector)s} == 0
          ||| % $._config,
          'for': "5m",
          labels: { severity: "warning" },
          annotations: {
            summary: "Prometheus cannot scrape cognito-import-exporter.",
            description: "Every scrape of {{ $labels.instance }} (job {{ $labels.job }}) has failed for at least 5 minutes. No import job metrics are collected there, so no import job alert can fire for its user pools.",
          },
        },
        {
          alert: "CognitoUserImportExporterAbsent",
          expr: |||
            absent(up{%(cognitoImportSelector)s})
          ||| % $._config,
          'for': "15m",
          labels: { severity: "warning" },
          annotations: {
            summary: "Prometheus has no cognito-import-exporter target.",
            description: "For at least 15 minutes Prometheus has had no target matching %(cognitoImportSelector)s, so no import job metrics are collected and no import job alert can fire." % $._config,
          },
        },
        {
          alert: "CognitoUserImportExporterConfigReloadFailed",
          expr: |||
            cognito_user_import_config_last_reload_successful{%(cognitoImportSelector)s} == 0
          ||| % $._config,
          'for': "5m",
          labels: { severity: "warning" },
          annotations: {
            summary: "cognito-import-exporter rejected its new configuration.",
            description: "The last configuration reload of {{ $labels.instance }} failed. The exporter keeps running with its previous configuration, so changes to pools or credentials have not taken effect, and it will not start again with the file as it is now.",
          },
        },
        {
          alert: "CognitoUserImportExporterCertificateExpiring",
          expr: |||
            cognito_user_import_web_tls_certificate_not_after_timestamp_seconds{%(cognitoImportSelector)s} - time()
              < %(certificateExpiryDays)s * 86400
          ||| % $._config,
          'for': "15m",
          labels: { severity: "warning" },
          annotations: {
            summary: "The TLS certificate cognito-import-exporter serves expires soon.",
            description: "The TLS certificate {{ $labels.instance }} serves expires in {{ $value | humanizeDuration }}. Once it has expired, Prometheus cannot scrape it and every import job alert goes quiet.",
          },
        },
        ],
      },
    ]),
  },
}
