# APIs and buckets. Nothing here grants access; see iam.tf.

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com", # images of the functions
    "cloudbuild.googleapis.com",       # builds the functions from the source zip
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com", # reconcile every 5 minutes
    "iam.googleapis.com",
    "logging.googleapis.com",
    "run.googleapis.com", # gen2 functions are Cloud Run services
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The governor's state: every key is written with a conditional write (docs/storage.md).
resource "google_storage_bucket" "state" {
  #checkov:skip=CKV_GCP_62:Access logging would write a second bucket per request of every delivery; the functions log each delivery to Cloud Logging, and Data Access audit logs can be enabled per project instead.
  #checkov:skip=CKV_GCP_78:Versioning off on purpose: the store's generations are its own concurrency control, and old versions of claims and state are never read; object deletion is limited to deliveries/, runs/ and decisions/ by the lifecycle rules below.
  name                        = local.state_bucket_name
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = false
  }

  # The same ages as the governor's own settings (GOVERNOR_RETENTION_DAYS and
  # GOVERNOR_AUDIT_RETENTION_DAYS, set from these variables), so a record means the same
  # on every backend; the local store deletes by them in reconcile. An overwrite makes a
  # new object, so `age` counts from a record's last change. The release states
  # (repos/<id>/state.json) and reconcile's cursor match no rule: they never expire.
  # Delivery claims and run records answer duplicates; GitHub redelivers for 3 days.
  lifecycle_rule {
    condition {
      age            = var.retention_days
      matches_prefix = ["deliveries/", "runs/"]
    }
    action {
      type = "Delete"
    }
  }

  # Decision records: the evaluations `governor explain` and `simulate` read.
  lifecycle_rule {
    condition {
      age            = var.audit_retention_days
      matches_prefix = ["decisions/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# The function source zips (`make package`), read by Cloud Build.
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only the build input zips, read by Cloud Build; access logging adds nothing an audit log does not.
  #checkov:skip=CKV_GCP_78:Each upload is a new object named by its content hash; versioning would keep nothing more.
  name                        = "${local.state_bucket_name}-source"
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "source" {
  # The name carries the content hash, so a new zip redeploys the functions.
  name   = "function-source-${filemd5(var.source_zip)}.zip"
  bucket = google_storage_bucket.source.name
  source = var.source_zip
}
