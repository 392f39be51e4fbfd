/// The cars the connected services support, as the product page lists them: one table for the
/// backend's compatibility check (`Compatibility` in the backend) and for a fleet's mix.
public enum ConnectedModels {
    /// Model → first build month (YYYY-MM) that has the connectivity unit. The product page
    /// gives Leon from May 2020 and Arona, Ateca, Ibiza and Tarraco from September 2020; it
    /// names the Mii electric with no date: September 2019, when its production began, is the
    /// project's assumption (docs/protocol.md).
    public static let firstBuildMonth: [String: String] = [
        "Mii electric": "2019-09", "Leon": "2020-05",
        "Arona": "2020-09", "Ateca": "2020-09", "Ibiza": "2020-09", "Tarraco": "2020-09",
    ]

    /// The model's two-letter code in a SEAT VIN (positions 7-8) and its model code; the
    /// propulsion a fleet car of that model gets. (SEAT's published codes; the Mii electric's
    /// propulsion is its only one.)
    public static let details: [String: (vinCode: String, modelCode: String, propulsion: VehicleProfile.Propulsion)] = [
        "Mii electric": ("KE", "KE1", .electric), "Leon": ("KL", "KL1", .petrol), "Arona": ("KJ", "KJ7", .petrol),
        "Ateca": ("5F", "KH7", .diesel), "Ibiza": ("KJ", "KJ1", .petrol), "Tarraco": ("KN", "KN2", .diesel),
    ]

    /// The 38 countries the product page lists, in its order: Allemagne, Belgique, République
    /// tchèque, Danemark, Finlande, Norvège, Suède, France, Grande-Bretagne, Irlande, Autriche,
    /// Suisse, Italie, Espagne, Portugal, Pologne, Hongrie, Grèce, Chypre, Pays-Bas, Luxembourg,
    /// Bulgarie, Roumanie, Croatie, Slovénie, Malte, Slovaquie, Andorre, Estonie, Lettonie,
    /// Lituanie, Serbie, Albanie, Macédoine (du Nord), Bosnie-Herzégovine, Ukraine, Monténégro
    /// and Gibraltar (ISO 3166-1 alpha-2; Grande-Bretagne is the United Kingdom's code, GB).
    public static let countries: [String] = [
        "DE", "BE", "CZ", "DK", "FI", "NO", "SE", "FR", "GB", "IE", "AT", "CH", "IT", "ES", "PT", "PL", "HU", "GR", "CY",
        "NL", "LU", "BG", "RO", "HR", "SI", "MT", "SK", "AD", "EE", "LV", "LT", "RS", "AL", "MK", "BA", "UA", "ME", "GI",
    ]
}
