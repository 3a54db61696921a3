// What a user of the mixin may change: mix in `{ _config+:: { ... } }`.
{
  assert std.length(std.stripChars(self._config.cognitoImportSelector, ' ')) > 0
         : '_config.cognitoImportSelector must select something, e.g. job="cognito-import-exporter"',
  _config+:: {
    // The series of cognito-import-exporter's scrape jobs. With /probe jobs beside the
    // /metrics one, widen it: 'job=~"cognito-import-exporter|cognito-import-probe"'.
    cognitoImportSelector: 'job="cognito-import-exporter"',

    // CognitoUserImportJobStuck: a Pending or InProgress job started longer ago than this
    // (hours; fractions allowed).
    jobStuckHours: 6,
    // CognitoUserImportJobExpiring: a Created job older than this (Cognito expires Created
    // jobs that were not started within 24 to 48 hours).
    jobExpiringHours: 20,
    // CognitoUserImportDataStale: a pool's last successful collection is older than this
    // (seconds): three times scrape.max_staleness's default of 5m, within which the exporter
    // refreshes every pool its budget affords. Raise it with max_staleness.
    staleDataSeconds: 900,
    // CognitoUserImportExporterCertificateExpiring: the served TLS certificate expires within
    // this many days (fractions allowed).
    certificateExpiryDays: 14,
    // CognitoUserImportJobUsersFailedForReason: a recent job's log gives one of these reasons
    // for failed users (pools with reasons: true), e.g. ['schema_mismatch', 'internal_error'].
    // Reasons: already_exists, no_verified_attribute, schema_mismatch, internal_error, other.
    // Empty: no such alert.
    failedReasonsToAlertOn: [],

    // Where the alerts' runbooks are: each alert's runbook_url is this, '#' and the alert's
    // name in lower case, the anchor of its heading in the README.
    runbookUrlBase: 'https://github.com/cognito-import-exporter/cognito-import-exporter/blob/main/README.md',

    dashboardUid: 'cognito-import-jobs',
    dashboardTitle: 'Amazon Cognito user import jobs',
    dashboardTags: ['aws', 'cognito', 'cognito-import-exporter'],
  },
}
