//! ISO 4217 currency codes: prices are rejected unless their currency is one of them.

/// Active ISO 4217 alphabetic codes (plus the precious-metal and testing codes left out).
const CODES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB \
BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK \
DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD \
IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD \
MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN \
PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS \
TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF \
XPF XSU YER ZAR ZMW ZWG ZWL";

/// Normalises a currency code (trim, upper-case) and checks it against ISO 4217.
pub fn normalise(raw: &str) -> Option<String> {
    let code = raw.trim().to_ascii_uppercase();
    (code.len() == 3 && CODES.split_ascii_whitespace().any(|c| c == code)).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_space() {
        assert_eq!(normalise(" usd ").as_deref(), Some("USD"));
        assert_eq!(normalise("eur").as_deref(), Some("EUR"));
    }

    #[test]
    fn rejects_unknown_codes() {
        assert_eq!(normalise("XYZ"), None);
        assert_eq!(normalise("US"), None);
        assert_eq!(normalise(""), None);
    }
}
