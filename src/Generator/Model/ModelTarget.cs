namespace Llama.Compiled.Generator.Model;

/// <summary>
/// The class a <c>[LlamaModel]</c> attribute is on, as plain values (no symbols or syntax), and
/// what the attribute asks for.
/// </summary>
/// <param name="Namespace">The class's namespace, or null for the global namespace.</param>
/// <param name="ClassName">The class's simple name.</param>
/// <param name="ContainingTypes">Declarations of the enclosing types, outermost first (e.g. "partial class Outer").</param>
/// <param name="HintName">A unique, file-name-safe name for the generated files.</param>
/// <param name="ConfigPath">The config path as written in the attribute.</param>
/// <param name="SourceDirectory">Folder of the file holding the attribute, '/'-separated ("" if unknown).</param>
/// <param name="MaxContext">The attribute's <c>MaxContext</c> (0 = take the config's).</param>
/// <param name="Weights">The attribute's <c>Weights</c>: the format the kernels compute with.</param>
/// <remarks>
/// It holds no source locations: an edit that moves the class in its file leaves the target equal, so nothing
/// downstream (config lookup, parsing, planning, emitting) runs again. Locations travel in <see cref="TargetResult"/>,
/// to the diagnostics output only.
/// </remarks>
internal sealed record ModelTarget(
    string? Namespace,
    string ClassName,
    EquatableArray<string> ContainingTypes,
    string HintName,
    string ConfigPath,
    string SourceDirectory,
    int MaxContext,
    ComputeFormat Weights);

/// <summary>Where the attribute's arguments are, for diagnostics anchored to them (see <see cref="DiagnosticAnchor"/>).</summary>
/// <param name="ConfigPathArgument">The attribute's config-path argument (or the attribute).</param>
/// <param name="MaxContextArgument">The <c>MaxContext</c> argument, if given.</param>
internal sealed record TargetLocations(LocationInfo? ConfigPathArgument, LocationInfo? MaxContextArgument);

/// <summary>
/// What the parser read from one [LlamaModel] class: the target (null when the class itself cannot be compiled), where
/// its attribute's arguments are, and the problems with the class.
/// </summary>
internal sealed record TargetResult(ModelTarget? Target, TargetLocations Locations, EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>An AdditionalFiles item that may be a model config: its path ('/'-separated), text and kind.</summary>
/// <param name="Path">The item's path; for a GGUF header, the path of the GGUF it was read from, so the attribute names the GGUF.</param>
/// <param name="Text">The JSON text ("" for a <see cref="ConfigKind.Gguf"/>, which is never read).</param>
/// <param name="Kind">What the text is.</param>
internal sealed record ConfigFile(string Path, string Text, ConfigKind Kind = ConfigKind.Json);

/// <summary>What an AdditionalFiles item that may hold a model is.</summary>
internal enum ConfigKind
{
    /// <summary>A Hugging Face config.json.</summary>
    Json,

    /// <summary>A GGUF header that build/Llama.Compiled.targets read from a .gguf item (see <see cref="GgufHeaderParser"/>).</summary>
    GgufHeader,

    /// <summary>A .gguf item itself: the targets that replace it by its header were not imported.</summary>
    Gguf,
}
