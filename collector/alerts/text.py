"""Human texts of alerts (French by default, English optional), for MQTT and phone notifications.

Numbers follow the reader's convention: `35,2 A` in French, `35.2 A` in English. Powers are
shown in kW, the unit of the subscribed power on the electricity bill.
"""

from __future__ import annotations

from typing import Literal

from collector.language import Lang, decimal_mark
from collector.wire.messages import AlertName

AlertState = Literal["firing", "resolved"]


def number(value: float, language: Lang, decimals: int = 1) -> str:
    return decimal_mark(f"{value:.{decimals}f}", language)


def _kw(value_w: float, language: Lang) -> str:
    return f"{number(value_w / 1000, language)} kW"


def _amps(value_a: float, language: Lang) -> str:
    return f"{number(value_a, language)} A"


def _limit_amps(value_a: float, language: Lang) -> str:
    # A rated current is a whole number on every socket label; keep it as printed there.
    decimals = 0 if float(value_a).is_integer() else 1
    return f"{number(value_a, language, decimals)} A"


def _seconds(value_s: float, language: Lang) -> str:
    return f"{number(value_s, language, 0)} s"


def describe(
    alert: AlertName,
    state: AlertState,
    label: str,
    value: float | None,
    limit: float | None,
    language: Lang = "fr",
) -> str:
    """One sentence with the value, the limit and the place (socket label or meter)."""
    fr = language == "fr"
    v = value if value is not None else float("nan")
    lim = limit if limit is not None else float("nan")
    if alert == "socket_overcurrent":
        figures = (
            f"{_amps(v, language)} pour {_limit_amps(lim, language)} autorisés"
            if fr
            else f"{_amps(v, language)} for {_limit_amps(lim, language)} allowed"
        )
        if state == "firing":
            return (
                f"Surintensité sur {label} : {figures}"
                if fr
                else f"Overcurrent on {label}: {figures}"
            )
        return (
            f"Fin de surintensité sur {label} : {figures}"
            if fr
            else f"Overcurrent over on {label}: {figures}"
        )
    if alert == "site_overload":
        figures = (
            f"{_kw(v, language)} pour {_kw(lim, language)} souscrits"
            if fr
            else f"{_kw(v, language)} for {_kw(lim, language)} subscribed"
        )
        if state == "firing":
            return (
                f"Dépassement de la puissance souscrite : {figures}"
                if fr
                else f"Subscribed power exceeded: {figures}"
            )
        return (
            f"Fin du dépassement de la puissance souscrite : {figures}"
            if fr
            else f"Back under the subscribed power: {figures}"
        )
    if alert == "site_overload_warning":
        figures = (
            f"{_kw(v, language)} pour un seuil d'alerte de {_kw(lim, language)}"
            if fr
            else f"{_kw(v, language)} for a warning level of {_kw(lim, language)}"
        )
        if state == "firing":
            return (
                f"Puissance proche de la limite souscrite : {figures}"
                if fr
                else f"Power close to the subscribed limit: {figures}"
            )
        return (
            f"Puissance revenue sous le seuil d'alerte : {figures}"
            if fr
            else f"Power back under the warning level: {figures}"
        )
    if alert == "charger_offline":  # value: seconds without a message from the charger
        if state == "firing":
            return (
                f"Borne {label} hors ligne : aucun message depuis {_seconds(v, language)}"
                if fr
                else f"Charger {label} offline: no message for {_seconds(v, language)}"
            )
        return f"Borne {label} de nouveau en ligne" if fr else f"Charger {label} back online"
    # meter_offline: value = seconds without a reading; limit = the allowed silence.
    if state == "firing":
        return (
            f"Compteur {label} hors ligne : aucune lecture depuis {_seconds(v, language)}"
            if fr
            else f"Meter {label} offline: no reading for {_seconds(v, language)}"
        )
    return (
        f"Compteur {label} de nouveau en ligne après {_seconds(v, language)} sans lecture"
        if fr
        else f"Meter {label} back online after {_seconds(v, language)} without a reading"
    )


def title(state: AlertState, site_name: str, language: Lang = "fr") -> str:
    if language == "fr":
        head = "Alerte recharge" if state == "firing" else "Alerte terminée"
    else:
        head = "Charging alert" if state == "firing" else "Alert resolved"
    return f"{head} – {site_name}" if site_name else head
