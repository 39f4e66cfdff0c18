"""The desk's words in French (the source text) and English (`desk.language: en`).

Every text the desk shows goes through `Translator.__call__` (`_` in the templates): the French
text is the key, `{name}` placeholders are filled after translation. `tests/desk/test_i18n.py`
finds every key the templates and the code use and fails on one missing from ENGLISH (which
would show in French on an English desk, rather than break the page).
Numbers follow the language too: a decimal comma in French, a point in English.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.language import Lang, decimal_mark

ENGLISH: dict[str, str] = {
    # navigation and titles
    "Réception": "Front desk",
    "Direct": "Live",
    "Séjours": "Stays",
    "Recharges": "Charging sessions",
    "Utilisateurs": "Users",
    "Réglages": "Settings",
    "Déconnexion ({name})": "Log out ({name})",
    "Déconnexion": "Log out",
    "Se déconnecter": "Log out",
    "Connexion": "Log in",
    "Se connecter": "Log in",
    "Nom": "Name",
    "Mot de passe": "Password",
    "Retour": "Back",
    "Accueil": "Home",
    # live view
    "Bornes en direct": "Charging points, live",
    "En charge": "Charging",
    "Libre": "Free",
    "En pause (délestage)": "Paused by load management",
    "Hors ligne": "Offline",
    "Collecteur en ligne": "Collector online",
    "Collecteur hors ligne": "Collector offline",
    "Collecteur : pas encore de nouvelles": "Collector: no news yet",
    "délestage en cours ({kw} kW à réduire)": "load shedding ({kw} kW to cut)",
    "chambre {room}": "room {room}",
    "badge {badge}": "badge {badge}",
    # policies
    "Au coût": "At cost",
    "Forfait": "Flat fee",
    "kWh inclus par nuit": "kWh included per night",
    # stays
    "Nouveau séjour": "New stay",
    "Séjours en cours": "Current stays",
    "Tous les séjours": "All stays",
    "N°": "No.",
    "Chambre": "Room",
    "Client": "Guest",
    "Arrivée": "Arrival",
    "Départ": "Departure",
    "Badges": "Badges",
    "Tarification": "Billing",
    "État": "State",
    "clos": "closed",
    "en cours": "current",
    "à venir": "upcoming",
    "terminé": "ended",
    "Aucun séjour.": "No stays.",
    "Nom du client (facultatif)": "Guest's name (optional)",
    "Numéros des badges remis, séparés par des espaces.": (
        "Numbers of the badges handed over, separated by spaces."
    ),
    "Forfait par recharge (€ TTC, tarification forfait)": (
        "Fee per session (€ incl. VAT, flat fee billing)"
    ),
    "kWh inclus par nuit (tarification kWh inclus)": (
        "kWh included per night (kWh included billing)"
    ),
    "Enregistrer": "Save",
    "Le séjour n'a pas été enregistré : corrigez les champs signalés.": (
        "The stay was not saved: correct the fields marked."
    ),
    "Rien n'a été enregistré : corrigez les champs signalés.": (
        "Nothing was saved: correct the fields marked."
    ),
    "Séjour {id}": "Stay {id}",
    "Séjour n° {id} · chambre {room}": "Stay no. {id} · room {room}",
    "Du {arrival} au {departure}": "From {arrival} to {departure}",
    "badges :": "badges:",
    "aucun": "none",
    "valables jusqu'au {until}": "valid until {until}",
    "{fee} € par recharge": "{fee} € per session",
    "{kwh} kWh par nuit": "{kwh} kWh per night",
    "clos le {closed}": "closed on {closed}",
    "InfluxDB injoignable : {error}": "InfluxDB unreachable: {error}",
    "Début": "Start",
    "Fin": "End",
    "Période": "Period",
    "Énergie (kWh)": "Energy (kWh)",
    "Montant TTC (€)": "Amount incl. VAT (€)",
    "forfait": "flat fee",
    "Aucune recharge pendant ce séjour pour l'instant.": "No charging during this stay so far.",
    "Total TTC": "Total incl. VAT",
    "Relevé (page imprimable)": "Statement (printable page)",
    "PDF": "PDF",
    "CSV": "CSV",
    "Relevé en anglais": "Statement in English",
    "PDF en anglais": "PDF in English",
    "Relevé en français": "Statement in French",
    "PDF en français": "PDF in French",
    "Prolonger": "Extend",
    "Nouveau départ": "New departure",
    "Clore (départ du client)": "Close (the guest leaves)",
    "Les badges du séjour sont retirés des bornes tout de suite.": (
        "The stay's badges are taken off the chargers at once."
    ),
    "Clore le séjour": "Close the stay",
    "Modifier": "Edit",
    "Historique": "History",
    "Quand": "When",
    "Qui": "Who",
    "Quoi": "What",
    "Détails": "Details",
    # sessions
    "Du": "From",
    "au": "to",
    "Afficher": "Show",
    "Borne": "Charging point",
    "Durée": "Duration",
    "{h} h {m} min": "{h} h {m} min",
    "Coût TTC (€)": "Cost incl. VAT (€)",
    "Badge / séjour": "Badge / stay",
    "attribuée au séjour n° {id}": "assigned to stay no. {id}",
    "chambre {room} (n° {id})": "room {room} (no. {id})",
    "Attribuer": "Assign",
    "sans badge, aucun séjour en cours": "no badge, no stay at the time",
    "Aucune recharge terminée sur cette période.": "No ended charging session in this period.",
    "Choisissez un séjour pour cette recharge.": "Choose a stay for this session.",
    "Cette recharge ne peut pas aller à ce séjour : elle a un badge, ou elle n'a pas commencé "
    "pendant le séjour.": (
        "This session cannot go to this stay: it has a badge, or it did not start during the stay."
    ),
    # owner pages
    "Rôle": "Role",
    "Ajouter ou remplacer": "Add or replace",
    "réception": "reception",
    "propriétaire": "owner",
    "Mot de passe ({n} caractères au moins)": "Password (at least {n} characters)",
    "Nom : 1 à 64 caractères.": "Name: 1 to 64 characters.",
    "Rôle : reception ou owner.": "Role: reception or owner.",
    "Mot de passe : {n} caractères au moins.": "Password: at least {n} characters.",
    "Réglages du site (lecture seule)": "Site settings (read-only)",
    "Le fichier du site les fixe ; les secrets ne sont pas montrés.": (
        "The site file sets them; secrets are not shown."
    ),
    "Tarif": "Tariff",
    "Depuis": "Since",
    "Base": "Base",
    "HP": "Peak (HP)",
    "HC": "Off-peak (HC)",
    "Option {option}": "Option {option}",
    "heures creuses {ranges}": "off-peak hours {ranges}",
    "Bornes": "Charging points",
    "Tout le fichier": "The whole file",
    # errors
    "Accès refusé": "Access denied",
    "Cette page est réservée au propriétaire.": "This page is for the owner only.",
    "Formulaire refusé": "Form refused",
    "Ce formulaire a expiré ou ne vient pas de cette page (jeton CSRF absent ou faux) : "
    "rechargez la page et recommencez.": (
        "This form has expired or does not come from this page (CSRF token missing or wrong): "
        "reload the page and try again."
    ),
    "Le formulaire de connexion a expiré (jeton CSRF absent ou faux) : rechargez la page.": (
        "The login form has expired (CSRF token missing or wrong): reload the page."
    ),
    "Trop d'essais manqués : réessayez dans {s} s.": "Too many failed attempts: try again in {s} s.",
    "Nom ou mot de passe incorrect.": "Wrong name or password.",
    "Séjour introuvable": "Stay not found",
    "Aucun séjour de ce numéro.": "No stay has this number.",
    "Séjour clos": "Stay closed",
    "Un séjour clos ne se modifie plus.": "A closed stay cannot be changed.",
    "PDF impossible": "No PDF",
    "Le PDF n'a pas pu être produit ({error}) : WeasyPrint a besoin de Pango (Debian : "
    "libpango-1.0-0 libpangoft2-1.0-0).": (
        "The PDF could not be made ({error}): WeasyPrint needs Pango (Debian: "
        "libpango-1.0-0 libpangoft2-1.0-0)."
    ),
    "InfluxDB injoignable": "InfluxDB unreachable",
    "Base de données pleine": "Database full",
    "Base de données occupée": "Database busy",
    "Le disque de la base de données est plein (ou en panne) : rien n'a été enregistré. "
    "Réessayez dans un instant ; si cela dure, prévenez le propriétaire.": (
        "The database's disk is full (or failing): nothing was saved. Try again in a moment; if it lasts, "
        "tell the owner."
    ),
    "La base de données est verrouillée par un autre programme : rien n'a été enregistré. "
    "Réessayez dans un instant ; si cela dure, prévenez le propriétaire.": (
        "The database is locked by another program: nothing was saved. Try again in a "
        "moment; if it lasts, tell the owner."
    ),
    # the stay form's checks (collector.desk.stays)
    "Chambre : 1 à 16 lettres, chiffres, espaces ou tirets.": (
        "Room: 1 to 16 letters, digits, spaces or hyphens."
    ),
    "Nom du client : 100 caractères au plus.": "Guest's name: 100 characters at most.",
    "Le départ doit être après l'arrivée.": "The departure must be after the arrival.",
    "Un séjour dure un an au plus.": "A stay lasts a year at most.",
    "Date hors limites : entre le {first} et le {last}.": (
        "Date out of range: between {first} and {last}."
    ),
    "Badge {badge} : 1 à 64 lettres, chiffres, points, tirets ou deux-points.": (
        "Badge {badge}: 1 to 64 letters, digits, dots, hyphens or colons."
    ),
    "Tarification : au coût, forfait ou kWh inclus.": (
        "Billing: at cost, flat fee or kWh included."
    ),
    "La chambre {room} est déjà occupée par le séjour n° {id} du {arrival} au {departure}.": (
        "Room {room} is already taken by stay no. {id} from {arrival} to {departure}."
    ),
    "Le badge {badge} est déjà donné à la chambre {room} (séjour n° {id}) jusqu'au {until}.": (
        "Badge {badge} is already given to room {room} (stay no. {id}) until {until}."
    ),
    "Date et heure attendues (AAAA-MM-JJ HH:MM).": "A date and time is expected (YYYY-MM-DD HH:MM).",
    "Un nombre de 0 à {highest} est attendu.": "A number from 0 to {highest} is expected.",
}


@dataclass(frozen=True)
class Translator:
    lang: Lang = "fr"

    def __call__(self, text: str, **values: Any) -> str:
        """`text` (French) in this language, its `{name}` placeholders filled."""
        if self.lang == "en":
            text = ENGLISH.get(text, text)
        return text.format(**values) if values else text

    def number(self, value: Any) -> str:
        """A number already formatted with a point, with the language's decimal mark."""
        return decimal_mark(str(value), self.lang)


FRENCH = Translator("fr")
