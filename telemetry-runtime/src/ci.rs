//! Which CI service, if any, runs this process, from the variables each service sets in its jobs.
//!
//! Only the presence or a fixed value of a variable is tested; no variable's text is ever sent.

use crate::config::{Env, Var};

/// What a provider sets in every job.
#[derive(Clone, Copy, Debug)]
enum Signal {
    /// The variable is on: see [`is_on`].
    On(&'static str),
    /// Both variables are on.
    Both(&'static str, &'static str),
    /// The variable's trimmed value is this text, ignoring ASCII case.
    Equals(&'static str, &'static str),
}

/// The providers in the order they are checked, each with the signals of which any one is
/// enough. A service that also sets another's variables comes before it: Forgejo and Gitea
/// runners set `GITHUB_ACTIONS`.
const PROVIDERS: &[(&str, &[Signal])] = {
    use Signal::{Both, Equals, On};
    &[
        ("forgejo-actions", &[On("FORGEJO_ACTIONS")]),
        ("gitea-actions", &[On("GITEA_ACTIONS")]),
        ("github-actions", &[On("GITHUB_ACTIONS")]),
        ("gitlab", &[On("GITLAB_CI")]),
        ("buildkite", &[On("BUILDKITE")]),
        ("circleci", &[On("CIRCLECI")]),
        // Jenkins still sets the variables of Hudson, which it was forked from.
        (
            "jenkins",
            &[
                On("JENKINS_URL"),
                On("HUDSON_URL"),
                Both("BUILD_ID", "JENKINS_HOME"),
            ],
        ),
        ("azure-pipelines", &[On("TF_BUILD")]),
        ("teamcity", &[On("TEAMCITY_VERSION")]),
        ("travis", &[On("TRAVIS")]),
        ("appveyor", &[On("APPVEYOR")]),
        ("bitbucket", &[On("BITBUCKET_BUILD_NUMBER")]),
        // Before Drone, whose plugins Woodpecker can run.
        ("woodpecker", &[Equals("CI", "woodpecker")]),
        ("drone", &[On("DRONE")]),
        (
            "aws-codebuild",
            &[On("CODEBUILD_BUILD_ID"), On("CODEBUILD_BUILD_ARN")],
        ),
        ("google-cloud-build", &[On("BUILDER_OUTPUT")]),
        ("semaphore", &[On("SEMAPHORE")]),
        ("buddy", &[On("BUDDY"), On("BUDDY_WORKSPACE_ID")]),
        ("codefresh", &[On("CF_BUILD_ID")]),
        ("bitrise", &[On("BITRISE_IO")]),
        ("cirrus", &[On("CIRRUS_CI")]),
        ("heroku", &[On("HEROKU_TEST_RUN_ID")]),
        ("netlify", &[On("NETLIFY")]),
        // `VERCEL` is also set while deployed functions run; only builds set `CI` as well.
        ("vercel", &[Both("VERCEL", "CI")]),
        ("cloudflare-pages", &[On("CF_PAGES")]),
        ("harness", &[On("HARNESS_BUILD_ID")]),
        ("sourcehut", &[Equals("CI_NAME", "sourcehut")]),
        ("codeship", &[Equals("CI_NAME", "codeship")]),
        ("screwdriver", &[On("SCREWDRIVER")]),
        ("expo", &[On("EAS_BUILD")]),
        ("codemagic", &[On("CM_BUILD_ID")]),
        ("bamboo", &[On("bamboo_planKey")]),
        ("gocd", &[On("GO_PIPELINE_LABEL")]),
        ("xcode-cloud", &[On("CI_XCODE_PROJECT")]),
        ("prow", &[On("PROW_JOB_ID")]),
    ]
};

/// Variables that many services set without naming themselves; when one is on and no provider
/// matched, the provider is `"unknown"`. `CI=false` or `CI=0` therefore means no CI at all.
const GENERIC: &[&str] = &["CI", "CONTINUOUS_INTEGRATION"];

/// The provider name returned when only a [generic](GENERIC) variable says this is CI.
const UNKNOWN: &str = "unknown";

/// The CI provider this process runs under, if any, from the usual variables: a short name
/// such as `"github-actions"`, or `"unknown"` when only `CI` or `CONTINUOUS_INTEGRATION` is on.
pub(crate) fn detect(env: &Env) -> Option<&'static str> {
    PROVIDERS
        .iter()
        .find(|(_, signals)| signals.iter().any(|signal| matches(env, *signal)))
        .map(|(name, _)| *name)
        .or_else(|| {
            GENERIC
                .iter()
                .any(|name| is_on(env, name))
                .then_some(UNKNOWN)
        })
}

fn matches(env: &Env, signal: Signal) -> bool {
    match signal {
        Signal::On(name) => is_on(env, name),
        Signal::Both(first, second) => is_on(env, first) && is_on(env, second),
        Signal::Equals(name, expected) => {
            matches!(env.var(name), Var::Text(text) if text.trim().eq_ignore_ascii_case(expected))
        }
    }
}

/// Whether a variable is set to something other than blank, `0` or `false` (in any case). A
/// value that is not Unicode cannot be either, so it counts as on.
fn is_on(env: &Env, name: &str) -> bool {
    match env.var(name) {
        Var::Unset => false,
        Var::NotUnicode => true,
        Var::Text(text) => {
            let text = text.trim();
            !text.is_empty() && text != "0" && !text.eq_ignore_ascii_case("false")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(pairs: &[(&str, &str)]) -> Option<&'static str> {
        detect(&Env::from_pairs(pairs))
    }

    #[test]
    fn each_provider_is_named_by_its_variables() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("FORGEJO_ACTIONS", "true")], "forgejo-actions"),
            (&[("GITEA_ACTIONS", "true")], "gitea-actions"),
            (&[("GITHUB_ACTIONS", "true")], "github-actions"),
            (&[("GITLAB_CI", "true")], "gitlab"),
            (&[("BUILDKITE", "true")], "buildkite"),
            (&[("CIRCLECI", "true")], "circleci"),
            (&[("JENKINS_URL", "https://ci.example/")], "jenkins"),
            (&[("HUDSON_URL", "https://ci.example/")], "jenkins"),
            (
                &[("BUILD_ID", "17"), ("JENKINS_HOME", "/var/jenkins")],
                "jenkins",
            ),
            (&[("TF_BUILD", "True")], "azure-pipelines"),
            (&[("TEAMCITY_VERSION", "2024.12")], "teamcity"),
            (&[("TRAVIS", "true")], "travis"),
            (&[("APPVEYOR", "True")], "appveyor"),
            (&[("BITBUCKET_BUILD_NUMBER", "42")], "bitbucket"),
            (&[("CI", "woodpecker")], "woodpecker"),
            (&[("DRONE", "true")], "drone"),
            (&[("CODEBUILD_BUILD_ID", "project:1234")], "aws-codebuild"),
            (
                &[("CODEBUILD_BUILD_ARN", "arn:aws:codebuild")],
                "aws-codebuild",
            ),
            (
                &[("BUILDER_OUTPUT", "/builder/outputs")],
                "google-cloud-build",
            ),
            (&[("SEMAPHORE", "true")], "semaphore"),
            (&[("BUDDY", "true")], "buddy"),
            (&[("BUDDY_WORKSPACE_ID", "123")], "buddy"),
            (&[("CF_BUILD_ID", "5f0c")], "codefresh"),
            (&[("BITRISE_IO", "true")], "bitrise"),
            (&[("CIRRUS_CI", "true")], "cirrus"),
            (&[("HEROKU_TEST_RUN_ID", "abc")], "heroku"),
            (&[("NETLIFY", "true")], "netlify"),
            (&[("VERCEL", "1"), ("CI", "1")], "vercel"),
            (&[("CF_PAGES", "1")], "cloudflare-pages"),
            (&[("HARNESS_BUILD_ID", "9")], "harness"),
            (&[("CI_NAME", "sourcehut")], "sourcehut"),
            (&[("CI_NAME", "CodeShip")], "codeship"),
            (&[("SCREWDRIVER", "true")], "screwdriver"),
            (&[("EAS_BUILD", "true")], "expo"),
            (&[("CM_BUILD_ID", "77")], "codemagic"),
            (&[("bamboo_planKey", "PROJ-PLAN")], "bamboo"),
            (&[("GO_PIPELINE_LABEL", "12")], "gocd"),
            (&[("CI_XCODE_PROJECT", "App.xcodeproj")], "xcode-cloud"),
            (&[("PROW_JOB_ID", "0f1e")], "prow"),
        ];
        for (pairs, expected) in cases {
            assert_eq!(detected(pairs), Some(*expected), "{pairs:?}");
        }
        // Every provider in the table is reached by some case above.
        for (name, _) in PROVIDERS {
            assert!(
                cases.iter().any(|(_, expected)| expected == name),
                "{name} is not tested"
            );
        }
    }

    #[test]
    fn no_variables_means_no_ci() {
        assert_eq!(detected(&[]), None);
        assert_eq!(detected(&[("PATH", "/usr/bin"), ("TERM", "xterm")]), None);
    }

    #[test]
    fn ci_set_to_false_zero_or_blank_is_not_ci() {
        for value in ["false", "FALSE", " False ", "0", "", "  "] {
            assert_eq!(detected(&[("CI", value)]), None, "CI={value:?}");
            assert_eq!(
                detected(&[("CONTINUOUS_INTEGRATION", value)]),
                None,
                "CONTINUOUS_INTEGRATION={value:?}"
            );
        }
    }

    #[test]
    fn a_generic_variable_alone_gives_an_unknown_provider() {
        for value in ["true", "1", "yes", "TRUE"] {
            assert_eq!(detected(&[("CI", value)]), Some("unknown"), "CI={value:?}");
        }
        assert_eq!(
            detected(&[("CONTINUOUS_INTEGRATION", "true")]),
            Some("unknown")
        );
    }

    #[test]
    fn a_provider_wins_over_the_generic_variable() {
        assert_eq!(
            detected(&[("CI", "true"), ("GITLAB_CI", "true")]),
            Some("gitlab")
        );
        // Some projects build with `CI=false` to keep warnings from failing the build; the
        // service is still known.
        assert_eq!(
            detected(&[("CI", "false"), ("NETLIFY", "true")]),
            Some("netlify")
        );
    }

    #[test]
    fn provider_variables_set_to_false_or_zero_do_not_count() {
        assert_eq!(detected(&[("GITHUB_ACTIONS", "false")]), None);
        assert_eq!(detected(&[("TRAVIS", "0")]), None);
        assert_eq!(detected(&[("GITHUB_ACTIONS", "")]), None);
        assert_eq!(detected(&[("BUILD_ID", "3")]), None);
        assert_eq!(detected(&[("JENKINS_HOME", "/var/jenkins")]), None);
    }

    #[test]
    fn forges_that_mimic_github_are_named_for_themselves() {
        let gitea = [("GITHUB_ACTIONS", "true"), ("GITEA_ACTIONS", "true")];
        assert_eq!(detected(&gitea), Some("gitea-actions"));
        let forgejo = [
            ("GITHUB_ACTIONS", "true"),
            ("GITEA_ACTIONS", "true"),
            ("FORGEJO_ACTIONS", "true"),
        ];
        assert_eq!(detected(&forgejo), Some("forgejo-actions"));
    }

    #[test]
    fn vercel_counts_only_while_building() {
        assert_eq!(detected(&[("VERCEL", "1")]), None);
        assert_eq!(detected(&[("VERCEL", "1"), ("CI", "1")]), Some("vercel"));
    }

    #[test]
    fn other_ci_values_are_generic() {
        assert_eq!(detected(&[("CI", "drone")]), Some("unknown"));
        assert_eq!(
            detected(&[("CI_NAME", "elsewhere"), ("CI", "1")]),
            Some("unknown")
        );
    }
}
