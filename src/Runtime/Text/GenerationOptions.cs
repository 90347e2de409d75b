using System.Collections.Generic;

namespace Llama.Compiled;

/// <summary>Options of one <see cref="TextGenerator.Generate(string, GenerationOptions?)"/> call.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate after the prompt. Default 256.</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>How each token is chosen.</summary>
    public SamplingOptions Sampling { get; init; } = new();

    /// <summary>
    /// Texts that end generation when the output contains one of them. The stop sequence itself is not
    /// output, and text that could be the start of one is held back until it is clear that it is not
    /// (so a chunk never has to be taken back). Empty strings are ignored. Default: none.
    /// </summary>
    public IReadOnlyList<string> StopSequences { get; init; } = [];

    /// <summary>
    /// Token ids that end generation like an end-of-sequence token (not output, not evaluated), in
    /// addition to the model's <see cref="LlamaModelShape.EosTokenIds"/>: for example a chat
    /// template's end-of-turn token. Default: none.
    /// </summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];

    /// <summary>
    /// Constrains the output to a grammar (GBNF, a JSON schema, any JSON: see <see cref="Llama.Compiled.Grammar"/>): only
    /// tokens that keep the text a prefix of the language are sampled; end-of-sequence and <see cref="StopTokenIds"/> are
    /// allowed only where the text is complete, and generation ends (<see cref="StopReason.EndOfSequence"/>) as soon as
    /// the grammar can accept nothing more (a JSON value closed; not so for a lazy grammar, see <see cref="GrammarTriggers"/>).
    /// Under a grammar, lazy or not, the text is the tokens' bytes as they are (no tokenizer clean-up of spaces). Text that <see cref="MaxNewTokens"/> or the context cut
    /// short is not complete: check <see cref="GenerationStats.StopReason"/>. Stop sequences still apply. Default: none.
    /// </summary>
    public Grammar? Grammar { get; init; }

    /// <summary>
    /// Makes <see cref="Grammar"/> lazy: the output is free text until it contains one of these triggers; from there (after
    /// the trigger's text, or from its start when <see cref="GrammarTrigger.IsGrammarText"/>) it must follow the grammar,
    /// and once the grammar is finished (can accept nothing more: a JSON object closed) the text is free again and the
    /// triggers are watched anew. A trigger may end inside a token: the rest of that token must then be grammar text (a
    /// token whose rest is not is never sampled); a token may finish the grammar and go on with free text. While the
    /// grammar applies, end-of-sequence and <see cref="StopTokenIds"/> are allowed only where its text is complete;
    /// generation does not stop when the grammar finishes. Tokens are matched as their bytes (special tokens as their
    /// text). Default none: the grammar applies from the first token. Ignored without a <see cref="Grammar"/>.
    /// </summary>
    public IReadOnlyList<GrammarTrigger> GrammarTriggers { get; init; } = [];
}
