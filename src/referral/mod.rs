//! The referral life cycle: which state may follow which, who may move it, and what the
//! referring police agency may see of it.
//!
//! ```text
//! SUBMITTED -> RECEIVED -> ASSIGNED -> CONTACT_ATTEMPTED -> ENGAGED | DECLINED | UNABLE_TO_CONTACT -> CLOSED
//!     \___________\____________\______________\__ WITHDRAWN (referring police agency)
//!     \___________\__ REJECTED (receiving mental-health agency)
//! ```
//!
//! Pure: no I/O. The receiving agency drives the main path; the referring agency may only
//! withdraw. Police see SUBMITTED, RECEIVED and CLOSED always; the finer states (ASSIGNED,
//! CONTACT_ATTEMPTED, ENGAGED, DECLINED, UNABLE_TO_CONTACT) reveal whether and how a person is
//! engaging with mental-health services, so without a consent naming the police agency they show
//! as `IN_PROGRESS`, and REJECTED shows as CLOSED (and the clinician contact is withheld, see
//! [`view`]). WITHDRAWN, the police agency's own act, is always shown.

pub mod view;

use std::fmt;

use serde::{Deserialize, Serialize};

/// A referral's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReferralState {
    /// Created by the referring police agency.
    Submitted,
    /// Acknowledged by the receiving agency.
    Received,
    /// A clinician has been assigned.
    Assigned,
    /// Contact with the person has been attempted.
    ContactAttempted,
    /// The person engaged with services.
    Engaged,
    /// The person declined services.
    Declined,
    /// The person could not be reached.
    UnableToContact,
    /// The referral is closed.
    Closed,
    /// Withdrawn by the referring agency.
    Withdrawn,
    /// Rejected by the receiving agency.
    Rejected,
}

const ALL: [ReferralState; 10] = [
    ReferralState::Submitted,
    ReferralState::Received,
    ReferralState::Assigned,
    ReferralState::ContactAttempted,
    ReferralState::Engaged,
    ReferralState::Declined,
    ReferralState::UnableToContact,
    ReferralState::Closed,
    ReferralState::Withdrawn,
    ReferralState::Rejected,
];

impl ReferralState {
    /// The wire name, e.g. `CONTACT_ATTEMPTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "SUBMITTED",
            Self::Received => "RECEIVED",
            Self::Assigned => "ASSIGNED",
            Self::ContactAttempted => "CONTACT_ATTEMPTED",
            Self::Engaged => "ENGAGED",
            Self::Declined => "DECLINED",
            Self::UnableToContact => "UNABLE_TO_CONTACT",
            Self::Closed => "CLOSED",
            Self::Withdrawn => "WITHDRAWN",
            Self::Rejected => "REJECTED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Closed | Self::Withdrawn | Self::Rejected)
    }
}

impl fmt::Display for ReferralState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asks for a transition, relative to the referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The police agency that submitted the referral.
    Referrer,
    /// The mental-health agency the referral was sent to.
    Receiver,
    /// Any other partner: may not move the referral.
    Other,
}

/// The states `actor` may move a referral to from `from`.
pub fn allowed_next(from: ReferralState, actor: Actor) -> Vec<ReferralState> {
    use ReferralState as S;
    match actor {
        Actor::Receiver => match from {
            S::Submitted => vec![S::Received, S::Rejected],
            S::Received => vec![S::Assigned, S::Rejected],
            S::Assigned => vec![S::ContactAttempted],
            S::ContactAttempted => vec![S::Engaged, S::Declined, S::UnableToContact],
            S::Engaged | S::Declined | S::UnableToContact => vec![S::Closed],
            S::Closed | S::Withdrawn | S::Rejected => vec![],
        },
        Actor::Referrer => match from {
            S::Submitted | S::Received | S::Assigned | S::ContactAttempted => vec![S::Withdrawn],
            _ => vec![],
        },
        Actor::Other => vec![],
    }
}

/// A transition that the life cycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a referral in state {from} cannot move to {to}{}", allowed_text(.allowed))]
pub struct InvalidTransition {
    /// Current state.
    pub from: ReferralState,
    /// Requested state.
    pub to: ReferralState,
    /// What this actor could move it to instead.
    pub allowed: Vec<ReferralState>,
}

fn allowed_text(allowed: &[ReferralState]) -> String {
    if allowed.is_empty() {
        "; no further transition is open to you".to_owned()
    } else {
        let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        format!("; allowed next states: {}", names.join(", "))
    }
}

/// Checks a transition.
pub fn transition(
    from: ReferralState,
    to: ReferralState,
    actor: Actor,
) -> Result<ReferralState, InvalidTransition> {
    let allowed = allowed_next(from, actor);
    if allowed.contains(&to) {
        Ok(to)
    } else {
        Err(InvalidTransition { from, to, allowed })
    }
}

/// The status the referring police agency sees.
pub fn police_view(state: ReferralState, consent_names_police: bool) -> &'static str {
    use ReferralState as S;
    match state {
        S::Submitted | S::Received | S::Closed | S::Withdrawn => state.as_str(),
        _ if consent_names_police => state.as_str(),
        S::Rejected => S::Closed.as_str(),
        _ => "IN_PROGRESS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReferralState as S;

    #[test]
    fn the_main_path_is_walkable_by_the_receiver_only() {
        let path = [
            S::Submitted,
            S::Received,
            S::Assigned,
            S::ContactAttempted,
            S::Engaged,
            S::Closed,
        ];
        for w in path.windows(2) {
            assert_eq!(transition(w[0], w[1], Actor::Receiver), Ok(w[1]));
            assert!(transition(w[0], w[1], Actor::Referrer).is_err());
            assert!(transition(w[0], w[1], Actor::Other).is_err());
        }
    }

    #[test]
    fn outcomes_lead_to_closed() {
        for outcome in [S::Engaged, S::Declined, S::UnableToContact] {
            assert!(transition(S::ContactAttempted, outcome, Actor::Receiver).is_ok());
            assert!(transition(outcome, S::Closed, Actor::Receiver).is_ok());
        }
    }

    #[test]
    fn skipping_a_state_is_refused_with_the_allowed_ones() {
        let e = transition(S::Submitted, S::Engaged, Actor::Receiver).unwrap_err();
        assert_eq!(e.allowed, vec![S::Received, S::Rejected]);
        assert!(e.to_string().contains("RECEIVED, REJECTED"), "{e}");
    }

    #[test]
    fn police_may_only_withdraw_an_open_referral() {
        assert!(transition(S::Assigned, S::Withdrawn, Actor::Referrer).is_ok());
        assert!(transition(S::Closed, S::Withdrawn, Actor::Referrer).is_err());
        assert!(transition(S::Submitted, S::Rejected, Actor::Referrer).is_err());
    }

    #[test]
    fn terminal_states_have_no_exit() {
        for s in ALL.into_iter().filter(|s| s.is_terminal()) {
            for actor in [Actor::Receiver, Actor::Referrer, Actor::Other] {
                assert!(allowed_next(s, actor).is_empty());
            }
        }
    }

    #[test]
    fn police_see_fine_states_only_under_consent() {
        assert_eq!(police_view(S::Submitted, false), "SUBMITTED");
        assert_eq!(police_view(S::Received, false), "RECEIVED");
        assert_eq!(police_view(S::Closed, false), "CLOSED");
        assert_eq!(police_view(S::Withdrawn, false), "WITHDRAWN");
        for fine in [
            S::Assigned,
            S::ContactAttempted,
            S::Engaged,
            S::Declined,
            S::UnableToContact,
        ] {
            assert_eq!(police_view(fine, false), "IN_PROGRESS");
            assert_eq!(police_view(fine, true), fine.as_str());
        }
        assert_eq!(police_view(S::Rejected, false), "CLOSED");
        assert_eq!(police_view(S::Rejected, true), "REJECTED");
    }

    #[test]
    fn wire_names_round_trip() {
        for s in ALL {
            assert_eq!(ReferralState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(ReferralState::parse("IN_PROGRESS"), None);
    }
}
