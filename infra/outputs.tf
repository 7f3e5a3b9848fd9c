output "webhook_url" {
  description = "The App's webhook URL (the github_webhook function); known from phase 1 on."
  value       = local.webhook_url
}

output "decision_page_url" {
  description = "Base URL of the decision page (GOVERNOR_PUBLIC_URL); known from phase 1 on."
  value       = local.decision_page_url
}

output "reconcile_url" {
  description = "The reconcile function's URI (the scheduler's target and OIDC audience); null in phase 1."
  value       = local.phase2 ? google_cloudfunctions2_function.governor["reconcile"].service_config[0].uri : null
}

output "state_bucket" {
  description = "The state bucket (GOVERNOR_STORE_URL is gs://<this>)."
  value       = google_storage_bucket.state.name
}

output "secret_ids" {
  description = "The Secret Manager secrets to add versions to (gcloud secrets versions add <id> --data-file=...)."
  value       = { for key, secret in google_secret_manager_secret.governor : key => secret.secret_id }
}

output "functions_service_account" {
  description = "The functions' service account."
  value       = google_service_account.functions.email
}
