//! Where a rollout stands, read from `kubectl get … -o json`: each
//! workload's state in a word, and what keeps a pod from being Ready.

use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not there yet; what it waits for.
    Waiting(String),
    Ready,
    /// It will not get there by itself (a Job out of retries).
    Failed(String),
}

/// A Deployment, StatefulSet or Job: `kind/name`, and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub key: String,
    pub state: State,
}

fn num(v: &Json) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Every workload in a `kubectl get deployments,statefulsets,jobs -o json` list.
pub fn workloads(list: &Json) -> Vec<Workload> {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .filter_map(|item| {
            let kind = item["kind"].as_str()?;
            let name = item["metadata"]["name"].as_str()?;
            let state = match kind {
                "Deployment" | "StatefulSet" => replicated(item),
                "Job" => job(item),
                _ => return None,
            };
            Some(Workload { key: format!("{}/{name}", kind.to_lowercase()), state })
        })
        .collect()
}

/// Ready when the controller has seen the latest spec, every replica runs
/// it, is ready, and no replica of an older version is left.
fn replicated(item: &Json) -> State {
    let (spec, status) = (&item["spec"], &item["status"]);
    let wanted = spec["replicas"].as_i64().unwrap_or(1);
    if num(&status["observedGeneration"]) < num(&item["metadata"]["generation"]) {
        return State::Waiting("the controller has not seen the new spec yet".to_owned());
    }
    let (updated, ready, total) =
        (num(&status["updatedReplicas"]), num(&status["readyReplicas"]), num(&status["replicas"]));
    let stale_revision =
        item["kind"] == "StatefulSet" && status["currentRevision"] != status["updateRevision"] && updated < wanted;
    if updated >= wanted && ready >= wanted && total <= wanted && !stale_revision {
        return State::Ready;
    }
    if updated < wanted {
        return State::Waiting(format!("rolling out: {updated} of {wanted} updated, {ready} ready"));
    }
    if total > wanted {
        return State::Waiting(format!("{} old replica(s) still terminating", total - wanted));
    }
    State::Waiting(format!("{ready}/{wanted} ready"))
}

fn job(item: &Json) -> State {
    let status = &item["status"];
    let conditions = status["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
    let holds = |kind: &str| conditions.iter().find(|c| c["type"] == kind && c["status"] == "True");
    if holds("Complete").is_some() || num(&status["succeeded"]) >= num(&item["spec"]["completions"]).max(1) {
        return State::Ready;
    }
    if let Some(failed) = holds("Failed") {
        let why = failed["message"].as_str().or(failed["reason"].as_str()).unwrap_or("failed");
        return State::Failed(why.to_owned());
    }
    match num(&status["failed"]) {
        0 => State::Waiting("running".to_owned()),
        n => State::Waiting(format!("running, {n} attempt(s) failed")),
    }
}

/// What keeps each pod of a `kubectl get pods -o json` list from being
/// Ready, one line per problem: waiting reasons (image pulls, crash loops,
/// bad config), restarts, unschedulable pods. Empty when none is seen.
pub fn pod_problems(list: &Json) -> Vec<String> {
    let mut out = Vec::new();
    for pod in list["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = pod["metadata"]["name"].as_str().unwrap_or("?");
        let statuses = ["initContainerStatuses", "containerStatuses"]
            .iter()
            .flat_map(|k| pod["status"][*k].as_array().cloned().unwrap_or_default());
        for c in statuses {
            let container = c["name"].as_str().unwrap_or("?");
            let waiting = &c["state"]["waiting"];
            if let Some(reason) =
                waiting["reason"].as_str().filter(|r| *r != "ContainerCreating" && *r != "PodInitializing")
            {
                let message = waiting["message"].as_str().unwrap_or_default();
                out.push(format!("pod {name}, container {container}: {reason} {message}").trim_end().to_owned());
            } else if num(&c["restartCount"]) > 0 && c["ready"] != true {
                out.push(format!(
                    "pod {name}, container {container}: restarted {} time(s), not ready",
                    num(&c["restartCount"])
                ));
            }
        }
        let conditions = pod["status"]["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
        if let Some(c) = conditions.iter().find(|c| c["type"] == "PodScheduled" && c["status"] == "False") {
            out.push(format!("pod {name}: not scheduled: {}", c["message"].as_str().unwrap_or_default()));
        }
    }
    out
}

/// Whether a problem line says the node could not pull an image.
pub fn is_pull_failure(problem: &str) -> bool {
    ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"].iter().any(|r| problem.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, status: Json) -> Json {
        json!({"kind": "Deployment", "metadata": {"name": "api", "generation": generation},
               "spec": {"replicas": 2}, "status": status})
    }

    #[test]
    fn a_deployment_is_ready_only_when_every_replica_runs_the_new_spec() {
        let ready = json!({"observedGeneration": 2, "updatedReplicas": 2, "readyReplicas": 2, "replicas": 2});
        let list = json!({"items": [deployment(2, ready.clone())]});
        assert_eq!(workloads(&list), [Workload { key: "deployment/api".to_owned(), state: State::Ready }]);
        // The controller has not seen generation 3.
        let state = &workloads(&json!({"items": [deployment(3, ready)]}))[0].state;
        assert!(matches!(state, State::Waiting(w) if w.contains("not seen")), "{state:?}");
        let rolling = json!({"observedGeneration": 3, "updatedReplicas": 1, "readyReplicas": 2, "replicas": 3});
        let state = &workloads(&json!({"items": [deployment(3, rolling)]}))[0].state;
        assert_eq!(*state, State::Waiting("rolling out: 1 of 2 updated, 2 ready".to_owned()));
        let old_left = json!({"observedGeneration": 3, "updatedReplicas": 2, "readyReplicas": 2, "replicas": 3});
        let state = &workloads(&json!({"items": [deployment(3, old_left)]}))[0].state;
        assert!(matches!(state, State::Waiting(w) if w.contains("old replica")), "{state:?}");
    }

    #[test]
    fn jobs_complete_or_fail() {
        let job = |status: Json| json!({"items": [{"kind": "Job", "metadata": {"name": "t"}, "spec": {"completions": 1}, "status": status}]});
        assert_eq!(workloads(&job(json!({"succeeded": 1})))[0].state, State::Ready);
        assert_eq!(
            workloads(&job(json!({"failed": 2})))[0].state,
            State::Waiting("running, 2 attempt(s) failed".to_owned())
        );
        let failed = json!({"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]});
        assert_eq!(workloads(&job(failed))[0].state, State::Failed("BackoffLimitExceeded".to_owned()));
    }

    #[test]
    fn pod_problems_name_pod_container_and_reason() {
        let pods = json!({"items": [{
            "metadata": {"name": "api-1"},
            "status": {
                "containerStatuses": [
                    {"name": "api", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}}},
                    {"name": "side", "state": {"running": {}}, "restartCount": 3, "ready": false},
                    {"name": "ok", "state": {"waiting": {"reason": "ContainerCreating"}}}
                ],
                "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/1 nodes are available"}]
            }
        }]});
        let problems = pod_problems(&pods);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(problems[0], "pod api-1, container api: ImagePullBackOff pull access denied");
        assert!(is_pull_failure(&problems[0]) && !is_pull_failure(&problems[1]));
        assert!(problems[2].contains("not scheduled"));
    }
}
