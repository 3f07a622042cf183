"""The page's words in Turkish and English. The language comes from the `lang` cookie (set by the
switch on the page), else from Accept-Language, else English."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["LANGUAGES", "Language", "choose_language", "texts"]

Language = Literal["en", "tr"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "tr")

_TEXTS: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "title": "Call archive",
        "login": "Log in",
        "logout": "Log out",
        "username": "User name",
        "password": "Password",
        "login_failed": "Wrong user name or password.",
        "login_throttled": "Too many failed logins. Try again in {seconds} seconds.",
        "search": "Search",
        "number": "Number",
        "from": "From",
        "to": "To",
        "pbx": "PBX",
        "trunk": "Trunk",
        "min_duration": "Min. duration (s)",
        "dial_status": "Dial status",
        "any": "any",
        "when": "Date and time",
        "parties": "Caller → callee",
        "duration": "Duration",
        "size": "Size",
        "play": "Play",
        "download": "Download",
        "download_selected": "Download selected as zip",
        "select": "Select",
        "results": "{total} recordings",
        "no_results": "No recordings match.",
        "next_page": "Next page",
        "first_page": "First page",
        "back_10": "−10 s",
        "forward_10": "+10 s",
        "speed": "Speed",
        "now_playing": "Now playing",
        "status": "Status",
        "archived_per_day": "Recordings archived per day (last 30 days)",
        "backlog": "Backlog",
        "backlog_help": "recordings found but not archived yet",
        "failures": "Failed recordings",
        "no_failures": "No failed recordings.",
        "reason": "Reason",
        "recording": "Recording",
        "attempts": "Attempts",
        "catalogue_total": "Recordings in the catalogue",
        "bad_query": "The search could not be run: {reason}",
        "language": "Türkçe",
        "admins_only": "The status view is for administrators.",
        "nothing_selected": "Select at least one recording.",
    },
    "tr": {
        "title": "Çağrı arşivi",
        "login": "Giriş",
        "logout": "Çıkış",
        "username": "Kullanıcı adı",
        "password": "Parola",
        "login_failed": "Kullanıcı adı veya parola yanlış.",
        "login_throttled": "Çok fazla başarısız giriş. {seconds} saniye sonra tekrar deneyin.",
        "search": "Ara",
        "number": "Numara",
        "from": "Başlangıç",
        "to": "Bitiş",
        "pbx": "Santral",
        "trunk": "Hat",
        "min_duration": "En az süre (sn)",
        "dial_status": "Arama durumu",
        "any": "hepsi",
        "when": "Tarih ve saat",
        "parties": "Arayan → aranan",
        "duration": "Süre",
        "size": "Boyut",
        "play": "Dinle",
        "download": "İndir",
        "download_selected": "Seçilenleri zip olarak indir",
        "select": "Seç",
        "results": "{total} kayıt",
        "no_results": "Eşleşen kayıt yok.",
        "next_page": "Sonraki sayfa",
        "first_page": "İlk sayfa",
        "back_10": "−10 sn",
        "forward_10": "+10 sn",
        "speed": "Hız",
        "now_playing": "Çalınan",
        "status": "Durum",
        "archived_per_day": "Günlük arşivlenen kayıt (son 30 gün)",
        "backlog": "Bekleyen",
        "backlog_help": "bulunan ama henüz arşivlenmemiş kayıtlar",
        "failures": "Başarısız kayıtlar",
        "no_failures": "Başarısız kayıt yok.",
        "reason": "Neden",
        "recording": "Kayıt",
        "attempts": "Deneme",
        "catalogue_total": "Katalogdaki kayıtlar",
        "bad_query": "Arama yapılamadı: {reason}",
        "language": "English",
        "admins_only": "Durum sayfası yöneticiler içindir.",
        "nothing_selected": "En az bir kayıt seçin.",
    },
}

# Issue 19 (limits under attack): its own block, merged into both languages.
_TEXTS["en"].update({
    "login_busy": "The server is busy checking logins. Try again in {seconds} seconds.",
})  # fmt: skip
_TEXTS["tr"].update({
    "login_busy": "Sunucu girişleri denetlemekle meşgul. {seconds} saniye sonra tekrar deneyin.",
})  # fmt: skip


def texts(language: Language) -> dict[str, str]:
    return _TEXTS[language]


def choose_language(cookie: str | None, accept_language: str | None) -> Language:
    """The `lang` cookie if it names a language we have; else the first of Accept-Language's
    languages (by q weight) that we have; else English."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "")[:512].split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        ranked.append((-weight, index, tag.strip().lower().split("-")[0]))
    for _, _, tag in sorted(ranked):
        if tag == "tr":
            return "tr"
        if tag == "en":
            return "en"
    return "en"
