locals {
  phase2            = var.github_app_id != ""
  state_bucket_name = var.state_bucket_name != "" ? var.state_bucket_name : "${var.project_id}-${var.name_prefix}-state"

  # A gen2 function is served at https://REGION-PROJECT.cloudfunctions.net/NAME (as well
  # as its run.app URI). This URL is known before the function exists, so the App can be
  # created in phase 1 and never needs a new webhook URL.
  functions_base_url = "https://${var.region}-${var.project_id}.cloudfunctions.net"
  function_names = {
    github_webhook = "${var.name_prefix}-webhook"
    decision_page  = "${var.name_prefix}-decision"
    reconcile      = "${var.name_prefix}-reconcile"
  }
  webhook_url       = "${local.functions_base_url}/${local.function_names.github_webhook}"
  decision_page_url = "${local.functions_base_url}/${local.function_names.decision_page}"

  private_key_dir  = "/etc/secrets/github-app"
  private_key_file = "private-key.pem"

  # Plain settings of every function (shared/governor/settings.py reads GOVERNOR_*).
  function_env = merge(
    {
      GOVERNOR_STORE_URL               = "gs://${google_storage_bucket.state.name}"
      GOVERNOR_GITHUB_APP_ID           = var.github_app_id
      GOVERNOR_GITHUB_PRIVATE_KEY_PATH = "${local.private_key_dir}/${local.private_key_file}"
      GOVERNOR_GITHUB_API_URL          = var.github_api_url
      GOVERNOR_PUBLIC_URL              = local.decision_page_url
      GOVERNOR_MODE                    = var.governor_mode
      GOVERNOR_RETENTION_DAYS          = tostring(var.retention_days)
      GOVERNOR_AUDIT_RETENTION_DAYS    = tostring(var.audit_retention_days)
      # Read by governor.logs for the Cloud Logging trace field.
      GOOGLE_CLOUD_PROJECT = var.project_id
    },
    var.github_app_slug != "" ? { GOVERNOR_GITHUB_APP_SLUG = var.github_app_slug } : {},
  )
}
