"""The page's words in Turkish and English. The language comes from the `lang` cookie (set by the
switch on the page), else from Accept-Language, else English."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["LANGUAGES", "Language", "choose_language", "number_text", "plural", "texts"]

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

# Issue 21 (compliance: roles, directory login, access history, audit, court export).
_TEXTS["en"].update({
    "login_directory_down": "The directory (LDAP) cannot be reached, so directory accounts"
    " cannot log in now. Local accounts still can. Try again later.",
    "audit": "Audit",
    "history": "Access history",
    "history_of": "Access history of this call",
    "history_none": "Nobody has played, downloaded or exported this call yet.",
    "user": "User",
    "action": "Action",
    "outcome": "Outcome",
    "source": "Address",
    "part": "Part",
    "whole_file": "whole file",
    "in_zip": "in a zip",
    "in_export": "export",
    "events": "{count} events",
    "event_one": "1 event",
    "calls_n": "{count} calls",
    "times_in": "times in {zone}",
    "download_csv": "Download CSV",
    "filter": "Filter",
    "key": "Call (object key)",
    "export": "Court export",
    "export_all": "Export all matching (court)",
    "export_count": "{count} calls match this search and your scope.",
    "export_too_many": "{count} calls match, more than the limit of {limit}: narrow the search.",
    "export_none": "No call matches: nothing to export.",
    "case": "Case reference",
    "export_button": "Export zip with manifest",
    "export_help": "The zip holds the MP3s exactly as archived, manifest.csv (SHA-256 of"
    " each) and export.txt; the export is recorded in the access log.",
    "integrity_bad": "The archived bytes of this call did not match their recorded MD5 when"
    " last streamed ({when}).",
    "integrity_count": "Whole-file streams whose bytes did not match the catalogue",
    "role": "Role",
    "scope": "Scope",
    "compliance_only": "This page is for the compliance and admin roles.",
})  # fmt: skip
_TEXTS["tr"].update({
    "login_directory_down": "Dizine (LDAP) ulaşılamıyor; dizin hesapları şu an giriş"
    " yapamaz. Yerel hesaplar yapabilir. Daha sonra tekrar deneyin.",
    "audit": "Denetim",
    "history": "Erişim geçmişi",
    "history_of": "Bu çağrının erişim geçmişi",
    "history_none": "Bu çağrıyı henüz kimse dinlemedi, indirmedi veya dışa aktarmadı.",
    "user": "Kullanıcı",
    "action": "İşlem",
    "outcome": "Sonuç",
    "source": "Adres",
    "part": "Bölüm",
    "whole_file": "tüm dosya",
    "in_zip": "zip içinde",
    "in_export": "dışa aktarım",
    "events": "{count} olay",
    "event_one": "1 olay",
    "calls_n": "{count} çağrı",
    "times_in": "saatler {zone} saatiyle",
    "download_csv": "CSV indir",
    "filter": "Süz",
    "key": "Çağrı (nesne anahtarı)",
    "export": "Mahkeme dışa aktarımı",
    "export_all": "Eşleşenlerin tümünü dışa aktar (mahkeme)",
    "export_count": "Bu arama ve yetki alanınızla {count} çağrı eşleşiyor.",
    "export_too_many": "{count} çağrı eşleşiyor, sınır {limit}: aramayı daraltın.",
    "export_none": "Eşleşen çağrı yok: dışa aktarılacak bir şey yok.",
    "case": "Dosya numarası",
    "export_button": "Manifestli zip olarak dışa aktar",
    "export_help": "Zip, MP3'leri arşivlendikleri gibi, manifest.csv (her birinin SHA-256"
    " özeti) ve export.txt içerir; dışa aktarım erişim kaydına yazılır.",
    "integrity_bad": "Bu çağrının arşivdeki baytları son akışta ({when}) kayıtlı MD5 ile"
    " eşleşmedi.",
    "integrity_count": "Baytları katalogla eşleşmeyen tam dosya akışları",
    "role": "Rol",
    "scope": "Yetki alanı",
    "compliance_only": "Bu sayfa uyum ve yönetici rolleri içindir.",
})  # fmt: skip

# Issue 20 (the archive's lifecycle: periodic destruction on the status view).
_TEXTS["en"].update({
    "destruction": "Periodic destruction",
    "destruction_last": "Last run",
    "destruction_next": "Next run",
    "destruction_never": "never",
    "destruction_off": "off: no retention rule, recordings are kept forever",
    "destruction_result": "{destroyed} destroyed, {kept} kept, {failed} failed ({outcome})",
    "destruction_running": "running or stopped early",
    "destruction_total": "Destroyed so far",
})  # fmt: skip
_TEXTS["tr"].update({
    "destruction": "Periyodik imha",
    "destruction_last": "Son çalışma",
    "destruction_next": "Sonraki çalışma",
    "destruction_never": "hiç çalışmadı",
    "destruction_off": "kapalı: saklama kuralı yok, kayıtlar süresiz saklanıyor",
    "destruction_result": "{destroyed} imha edildi, {kept} saklandı, {failed} başarısız"
    " ({outcome})",
    "destruction_running": "sürüyor ya da erken durdu",
    "destruction_total": "Şimdiye dek imha edilen",
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


# Issue 18 (finding a call): the search form, results, pages, the player, every error and the
# status view's states. Merged over the words above (a key here replaces one there).
_SEARCH_TEXTS: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "results_one": "1 recording",
        "results_other": "{total} recordings",
        "results_capped": "more than {total} recordings",
        "showing": "{first}–{last} of {total}",
        "showing_capped": "{first}–{last} of more than {total}",
        "unknown": "unknown",
        "direction": "Direction",
        "direction_in": "in",
        "direction_out": "out",
        "direction_internal": "internal",
        "months": "Jan,Feb,Mar,Apr,May,Jun,Jul,Aug,Sep,Oct,Nov,Dec",
        "date_help": "YYYY-MM-DD, or with a time: YYYY-MM-DD HH:MM",
        "from_time": "From (time)",
        "to_time": "To (time)",
        "today": "Today",
        "yesterday": "Yesterday",
        "last_7_days": "Last 7 days",
        "this_month": "This month",
        "clear_form": "Clear",
        "more_filters": "More filters",
        "page": "Page",
        "pages": "Pages",
        "page_n": "Page {n}",
        "first_page": "« First",
        "previous_page": "‹ Previous",
        "next_page": "Next ›",
        "last_page": "Last »",
        "sort_by": "Sort by {column}",
        "sorted_asc": "ascending",
        "sorted_desc": "descending",
        "parties": "Caller → callee",
        "caller": "Caller",
        "callee": "Callee",
        "when": "Date and time",
        "play_label": "Play {label}",
        "pause_label": "Pause {label}",
        "pause": "Pause",
        "download_label": "Download {label}",
        "select_label": "Select {label}",
        "player": "Player",
        "playing": "Playing: {label}",
        "paused": "Paused: {label}",
        "keys_help": "Keys: Space play/pause, ← 10 s back, → 10 s forward",
        "speed_n": "Speed {rate}",
        "session_ended": "Your session has ended. Log in again: you will be back on the same page.",
        "bad_query": "The search could not be run: {reason}",
        "err_date": "{field}: write a date as YYYY-MM-DD, or a date and time as YYYY-MM-DD HH:MM.",
        "err_to_before_from": "“To” must be later than “From”.",
        "err_whole_number": "{field}: a whole number from {low} to {high}.",
        "err_choice": "{field}: choose one of {allowed}.",
        "err_too_long": "{field}: at most {high} characters.",
        "err_number": "Number: digits only (spaces, dashes and a leading + are fine).",
        "err_page": "Page: choose a page from 1 to {high}, or narrow the search to go deeper.",
        "err_limit": "Page size: 1 to {high}.",
        "err_cursor": "That page link is not valid any more: start the search again.",
        "err_sort": "Sort: choose time, duration, caller or callee.",
        "err_order": "Order: ascending or descending.",
        "err_direction": "Direction: in, out or internal.",
        "err_date_range": "A date is out of range: use years 1 to 9999.",
        "field_number": "Number",
        "field_from": "From",
        "field_to": "To",
        "field_pbx": "PBX",
        "field_direction": "Direction",
        "field_trunk": "Trunk",
        "field_min_duration": "Min. duration",
        "field_dial_status": "Dial status",
        "field_sort": "Sort",
        "field_order": "Order",
        "field_page": "Page",
        "field_limit": "Page size",
        "state_discovered": "discovered",
        "state_downloaded": "downloaded",
        "state_transcoded": "transcoded",
        "state_uploaded": "uploaded",
        "state_verified": "verified",
        "state_failed": "failed",
        "state_empty": "empty",
        "state_destroyed": "destroyed",
        "results_region": "Search results",
        "filters": "Search filters",
        "menu": "Menu",
        "skip_to_results": "Skip to results",
    },
    "tr": {
        "results_one": "1 kayıt",
        "results_other": "{total} kayıt",
        "results_capped": "{total} kayıttan fazla",
        "showing": "{total} kayıttan {first}–{last}",
        "showing_capped": "{total} kayıttan fazlasından {first}–{last}",
        "unknown": "bilinmiyor",
        "direction": "Yön",
        "direction_in": "gelen",
        "direction_out": "giden",
        "direction_internal": "dahili",
        "months": "Oca,Şub,Mar,Nis,May,Haz,Tem,Ağu,Eyl,Eki,Kas,Ara",
        "date_help": "YYYY-AA-GG, ya da saatle: YYYY-AA-GG SS:DD",
        "from_time": "Başlangıç (saat)",
        "to_time": "Bitiş (saat)",
        "today": "Bugün",
        "yesterday": "Dün",
        "last_7_days": "Son 7 gün",
        "this_month": "Bu ay",
        "clear_form": "Temizle",
        "more_filters": "Diğer filtreler",
        "page": "Sayfa",
        "pages": "Sayfalar",
        "page_n": "Sayfa {n}",
        "first_page": "« İlk",
        "previous_page": "‹ Önceki",
        "next_page": "Sonraki ›",
        "last_page": "Son »",
        "sort_by": "{column} sütununa göre sırala",
        "sorted_asc": "artan",
        "sorted_desc": "azalan",
        "parties": "Arayan → aranan",
        "caller": "Arayan",
        "callee": "Aranan",
        "when": "Tarih ve saat",
        "play_label": "Dinle: {label}",
        "pause_label": "Duraklat: {label}",
        "pause": "Duraklat",
        "download_label": "İndir: {label}",
        "select_label": "Seç: {label}",
        "player": "Oynatıcı",
        "playing": "Çalınıyor: {label}",
        "paused": "Duraklatıldı: {label}",
        "keys_help": "Tuşlar: Boşluk dinle/duraklat, ← 10 sn geri, → 10 sn ileri",
        "speed_n": "Hız {rate}",
        "session_ended": "Oturumunuz sona erdi. Yeniden giriş yapın: aynı sayfaya döneceksiniz.",
        "bad_query": "Arama yapılamadı: {reason}",
        "err_date": "{field}: tarihi YYYY-AA-GG, tarih ve saati YYYY-AA-GG SS:DD olarak yazın.",
        "err_to_before_from": "“Bitiş”, “Başlangıç”tan sonra olmalı.",
        "err_whole_number": "{field}: {low} ile {high} arasında bir tam sayı.",
        "err_choice": "{field}: şunlardan birini seçin: {allowed}.",
        "err_too_long": "{field}: en çok {high} karakter.",
        "err_number": "Numara: yalnızca rakam (boşluk, tire ve baştaki + olabilir).",
        "err_page": "Sayfa: 1 ile {high} arasında bir sayfa seçin ya da aramayı daraltın.",
        "err_limit": "Sayfa boyutu: 1 ile {high} arası.",
        "err_cursor": "Bu sayfa bağlantısı artık geçerli değil: aramayı yeniden başlatın.",
        "err_sort": "Sıralama: zaman, süre, arayan ya da aranan seçin.",
        "err_order": "Sıra: artan ya da azalan.",
        "err_direction": "Yön: gelen, giden ya da dahili.",
        "err_date_range": "Tarih aralık dışında: 1 ile 9999 arası yıllar kullanın.",
        "field_number": "Numara",
        "field_from": "Başlangıç",
        "field_to": "Bitiş",
        "field_pbx": "Santral",
        "field_direction": "Yön",
        "field_trunk": "Hat",
        "field_min_duration": "En az süre",
        "field_dial_status": "Arama durumu",
        "field_sort": "Sıralama",
        "field_order": "Sıra",
        "field_page": "Sayfa",
        "field_limit": "Sayfa boyutu",
        "state_discovered": "bulundu",
        "state_downloaded": "indirildi",
        "state_transcoded": "dönüştürüldü",
        "state_uploaded": "yüklendi",
        "state_verified": "doğrulandı",
        "state_failed": "başarısız",
        "state_empty": "boş",
        "state_destroyed": "imha edildi",
        "results_region": "Arama sonuçları",
        "filters": "Arama filtreleri",
        "menu": "Menü",
        "skip_to_results": "Sonuçlara geç",
    },
}
for _code, _words in _SEARCH_TEXTS.items():
    _TEXTS[_code].update(_words)


def plural(language: Language, count: int, one: str, other: str) -> str:
    """`one` for exactly 1, else `other` (English and Turkish need no more forms)."""
    del language
    return one if count == 1 else other


def number_text(language: Language, count: int) -> str:
    """`count` with the language's thousands separator (10,000 / 10.000)."""
    text = f"{count:,}"
    return text.replace(",", ".") if language == "tr" else text
