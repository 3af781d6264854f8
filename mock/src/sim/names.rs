//! Static vocabularies for realistic-looking generated rows (some non-ASCII on purpose,
//! so JSON escaping and UTF-8 handling are exercised).

/// `(display, ascii)` first names.
pub const FIRST_NAMES: &[(&str, &str)] = &[
    ("Emma", "emma"),
    ("Liam", "liam"),
    ("Sophie", "sophie"),
    ("Noah", "noah"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Mia", "mia"),
    ("Lucas", "lucas"),
    ("Anna", "anna"),
    ("Łukasz", "lukasz"),
    ("Chloé", "chloe"),
    ("Finn", "finn"),
    ("Julia", "julia"),
    ("Mateo", "mateo"),
    ("Sara", "sara"),
    ("Jonas", "jonas"),
    ("Lea", "lea"),
    ("Oliver", "oliver"),
    ("Ines", "ines"),
    ("Hugo", "hugo"),
];

/// `(display, ascii)` last names.
pub const LAST_NAMES: &[(&str, &str)] = &[
    ("de Vries", "devries"),
    ("Müller", "mueller"),
    ("García", "garcia"),
    ("Rossi", "rossi"),
    ("Kowalski", "kowalski"),
    ("Dubois", "dubois"),
    ("Jansen", "jansen"),
    ("Smith", "smith"),
    ("Novák", "novak"),
    ("O'Brien", "obrien"),
    ("Silva", "silva"),
    ("Andersson", "andersson"),
    ("Bakker", "bakker"),
    ("Schmidt", "schmidt"),
    ("Fernández", "fernandez"),
    ("Peeters", "peeters"),
];

/// `(city, ISO country)` pairs.
pub const CITIES: &[(&str, &str)] = &[
    ("Amsterdam", "NL"),
    ("Rotterdam", "NL"),
    ("Utrecht", "NL"),
    ("Berlin", "DE"),
    ("München", "DE"),
    ("Hamburg", "DE"),
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("Madrid", "ES"),
    ("Barcelona", "ES"),
    ("Milano", "IT"),
    ("Roma", "IT"),
    ("Warszawa", "PL"),
    ("Kraków", "PL"),
    ("Brussel", "BE"),
    ("Antwerpen", "BE"),
    ("Wien", "AT"),
    ("København", "DK"),
    ("Stockholm", "SE"),
    ("Dublin", "IE"),
];

/// Email domains.
pub const DOMAINS: &[&str] = &["example.com", "mail.test", "inbox.example", "shop.invalid"];

/// Top-level categories and their sub-categories.
pub const CATEGORY_TREE: &[(&str, &[&str])] = &[
    (
        "Electronics",
        &["Phones", "Laptops", "Audio", "Cameras", "Accessories"],
    ),
    (
        "Home & Kitchen",
        &["Cookware", "Furniture", "Lighting", "Bedding"],
    ),
    ("Fashion", &["Shoes", "Jackets", "T-Shirts", "Bags"]),
    ("Sports", &["Running", "Cycling", "Fitness", "Outdoor"]),
    ("Books", &["Fiction", "Non-Fiction", "Children"]),
    ("Beauty", &["Skincare", "Fragrance", "Haircare"]),
];

/// Product name adjectives.
pub const ADJECTIVES: &[&str] = &[
    "Classic",
    "Ultra",
    "Eco",
    "Smart",
    "Compact",
    "Premium",
    "Vintage",
    "Pro",
    "Lite",
    "Nordic",
    "Urban",
    "Ergonomic",
];

/// Product name nouns.
pub const NOUNS: &[&str] = &[
    "Widget",
    "Kit",
    "Set \"Deluxe\"",
    "Pack",
    "Edition",
    "Bundle",
    "Series",
    "Model",
    "Collection",
    "Box",
];

/// Colors for product attributes.
pub const COLORS: &[&str] = &["black", "white", "red", "blue", "green", "grey", "beige"];

/// Materials for product attributes.
pub const MATERIALS: &[&str] = &[
    "cotton",
    "steel",
    "aluminium",
    "bamboo",
    "plastic",
    "leather",
];

/// Seller name suffixes.
pub const SELLER_SUFFIXES: &[&str] = &["B.V.", "GmbH", "S.L.", "Ltd", "S.A.", "& Co"];

/// Warehouse codes and their city.
pub const WAREHOUSES: &[(&str, &str)] = &[
    ("AMS1", "Amsterdam"),
    ("FRA1", "Frankfurt"),
    ("MAD1", "Madrid"),
    ("WAW1", "Warszawa"),
    ("LYS1", "Lyon"),
];

/// Carrier sorting hubs used for in-transit scans.
pub const HUBS: &[&str] = &["Venlo", "Köln", "Lille", "Liège", "Leipzig", "Zaragoza"];
