# Identities. The functions' account gets object access on the state bucket and read
# access to the three secrets (secrets.tf), nothing at project level.

resource "google_service_account" "functions" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-fn"
  display_name = "Release Governor functions"
  description  = "Runs the governor functions: objects of the state bucket, the governor's secrets, nothing else."
  depends_on   = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "functions_state" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.functions.email}"
}

# Calls reconcile: the only identity allowed to invoke it (functions.tf).
resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-sched"
  display_name = "Release Governor scheduler"
  description  = "Signs the OIDC token of the Cloud Scheduler job that calls reconcile."
  depends_on   = [google_project_service.apis]
}

# Builds the functions' images from the source zip. A dedicated account, so the build
# does not depend on the default compute account's roles (often removed by org policy).
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-build"
  display_name = "Release Governor function builds"
  description  = "Cloud Build identity of the governor functions' builds."
  depends_on   = [google_project_service.apis]
}

# What a function build needs, and no more (roles/cloudbuild.builds.builder would also
# let it act as other accounts): write its log, push the function's image (GCF keeps
# them in its own gcf-artifacts repository), read the source zip (below).
resource "google_project_iam_member" "build_roles" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}
