using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Llama.Compiled.Grammars;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// A constraint on generated text: the output must be a string of the grammar's language. Set it as
/// <see cref="GenerationOptions.Grammar"/>; tokens that would leave the language are never sampled, end-of-sequence is
/// allowed only where the text is complete, and generation stops when the grammar can accept nothing more.
/// </summary>
/// <remarks>
/// <para>
/// Made from GBNF (<see cref="FromGbnf"/>), a JSON schema (<see cref="FromJsonSchema(string)"/>) or as
/// <see cref="AnyJson"/>. A grammar is compiled once, is immutable, and can be used by any number of generations at once,
/// on any threads. What it learns while generating with a vocabulary (its states, the tokens allowed in each) is kept and
/// shared by the later generations with the same tokenizer, so reuse one <see cref="Grammar"/> instead of making it
/// again for each request.
/// </para>
/// <para>
/// Matching works on UTF-8 bytes: a token may end inside a character (byte-level vocabularies, SentencePiece byte
/// tokens) or span several grammar symbols.
/// </para>
/// </remarks>
public sealed class Grammar
{
    private static readonly Lazy<Grammar> AnyJsonGrammar = new(() => FromGbnf(JsonSchemaConverter.AnyJsonObject()));
    private static readonly TokenVocabulary NoTokens = TokenVocabulary.FromBytes([]);

    private readonly ConditionalWeakTable<TokenVocabulary, GrammarEngine> _engines = new();

    private Grammar(GrammarProgram program, string gbnf, string rootRule)
    {
        Program = program;
        Gbnf = gbnf;
        RootRule = rootRule;
    }

    /// <summary>The grammar as GBNF: the text given to <see cref="FromGbnf"/>, or the one written for a JSON schema.</summary>
    public string Gbnf { get; }

    /// <summary>The rule the text must match.</summary>
    public string RootRule { get; }

    internal GrammarProgram Program { get; }

    /// <summary>
    /// Any JSON object (OpenAI's <c>json_object</c> response format): <c>{</c> … <c>}</c> with any members and values,
    /// whitespace inside limited to a space or a newline with up to 20 spaces or tabs of indentation between tokens; no
    /// whitespace before or after the object, so generation stops at its closing brace.
    /// </summary>
    public static Grammar AnyJson => AnyJsonGrammar.Value;

    /// <summary>
    /// Compiles a GBNF grammar as llama.cpp writes them (its <c>grammars/README.md</c>): rules <c>name ::= …</c>,
    /// alternatives <c>|</c>, groups, <c>* + ?</c>, <c>{m}</c> <c>{m,}</c> <c>{m,n}</c>, literals <c>"…"</c>, classes
    /// <c>[a-z]</c> <c>[^…]</c>, <c>.</c>, escapes <c>\xXX \uXXXX \UXXXXXXXX \t \r \n \\ \" \[ \] \-</c>, <c>#</c>
    /// comments. Characters are Unicode code points. Token references (<c>&lt;[id]&gt;</c>) are not supported.
    /// </summary>
    /// <param name="gbnf">The grammar text.</param>
    /// <param name="rootRule">The rule the whole output must match (default <c>root</c>).</param>
    /// <exception cref="GrammarFormatException">
    /// The text is malformed, a rule is used but not defined or defined twice, there is no root rule, or a rule is
    /// left-recursive (the message has the line and column).
    /// </exception>
    public static Grammar FromGbnf(string gbnf, string rootRule = "root")
    {
        ArgumentNullException.ThrowIfNull(gbnf);
        ArgumentException.ThrowIfNullOrEmpty(rootRule);
        return new Grammar(GrammarCompiler.Compile(gbnf, rootRule), gbnf, rootRule);
    }

    /// <summary>
    /// Compiles the grammar of the JSON values that <paramref name="jsonSchema"/> accepts (compact JSON, with limited
    /// whitespace between tokens and none around the value).
    /// </summary>
    /// <remarks>
    /// <para>Supported: <c>type</c> (also as an array), <c>properties</c> and <c>required</c> (properties come in the
    /// schema's order; optional ones may be left out), <c>additionalProperties</c> (false, true or a schema; when absent it
    /// is false if <c>properties</c> are given — llama.cpp's choice — and true otherwise; additional keys are written
    /// without escapes and never equal a listed property), <c>items</c>, <c>prefixItems</c>, <c>minItems</c>,
    /// <c>maxItems</c>, <c>enum</c>, <c>const</c>, <c>minLength</c>/<c>maxLength</c> (in code points), <c>pattern</c> (a
    /// regular-expression subset; with a pattern, the lengths are not enforced), <c>format</c> <c>date</c>, <c>time</c>,
    /// <c>date-time</c> and <c>uuid</c> (other formats are plain strings), <c>integer</c> with
    /// <c>minimum</c>/<c>maximum</c>/<c>exclusiveMinimum</c>/<c>exclusiveMaximum</c>, <c>number</c>, <c>boolean</c>,
    /// <c>null</c>, <c>anyOf</c>, <c>oneOf</c> (as anyOf: branches that overlap are not made exclusive), <c>allOf</c>
    /// (merged), local <c>$ref</c> (<c>#/$defs/…</c>, <c>#/definitions/…</c>, <c>#</c>; recursive ones too).</para>
    /// <para>Not enforced (ignored): bounds of <c>number</c>, <c>multipleOf</c>, <c>minProperties</c>,
    /// <c>maxProperties</c>, <c>uniqueItems</c>, <c>contains</c>, <c>patternProperties</c>, <c>propertyNames</c>,
    /// <c>not</c>, <c>if</c>/<c>then</c>/<c>else</c>, dependent keywords. Integers have at most 16 digits, numbers at
    /// most 16 digits before and after the point and two exponent digits.</para>
    /// </remarks>
    /// <exception cref="GrammarFormatException">
    /// The text is not JSON, or the schema is malformed or uses what is not supported (a remote <c>$ref</c>, a pattern
    /// feature); <see cref="GrammarFormatException.JsonPointer"/> says where.
    /// </exception>
    public static Grammar FromJsonSchema(string jsonSchema)
    {
        ArgumentNullException.ThrowIfNull(jsonSchema);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(jsonSchema, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new GrammarFormatException($"The JSON schema is not valid JSON: {e.Message}", e);
        }
        using (document)
            return FromJsonSchema(document.RootElement);
    }

    /// <inheritdoc cref="FromJsonSchema(string)"/>
    public static Grammar FromJsonSchema(JsonElement jsonSchema)
    {
        string gbnf = JsonSchemaConverter.Convert(jsonSchema);
        try
        {
            return FromGbnf(gbnf);
        }
        catch (GrammarFormatException e)
        {
            throw new GrammarFormatException($"The JSON schema's grammar cannot be used: {e.Message}", "", e);
        }
    }

    /// <summary>Whether the whole of <paramref name="text"/> is in the grammar's language.</summary>
    public bool IsMatch(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        GrammarEngine engine = EngineFor(NoTokens);
        int state = engine.Advance(engine.InitialState, Encoding.UTF8.GetBytes(text));
        return state != 0 && engine.CanEnd(state);
    }

    /// <summary>
    /// Whether <paramref name="text"/> can be continued into a string of the language (is a prefix of one, or one).
    /// </summary>
    public bool IsPrefix(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        GrammarEngine engine = EngineFor(NoTokens);
        return engine.Advance(engine.InitialState, Encoding.UTF8.GetBytes(text)) != 0;
    }

    /// <summary>
    /// Starts matching a generation: the state of one output, which allows and accepts tokens of
    /// <paramref name="tokenizer"/>'s vocabulary.
    /// </summary>
    /// <param name="tokenizer">The model's tokenizer (SentencePiece, byte-level BPE, or another: then each id's text).</param>
    /// <param name="endTokenIds">Tokens that end the output (EOS, a chat template's end of turn): allowed only where the grammar is complete.</param>
    public GrammarMatcher CreateMatcher(Tokenizer tokenizer, IEnumerable<int>? endTokenIds = null) =>
        new(this, EngineFor(TokenVocabulary.For(tokenizer)), endTokenIds);

    internal GrammarEngine EngineFor(TokenVocabulary vocabulary) =>
        _engines.GetValue(vocabulary, v => new GrammarEngine(Program, v));

    /// <summary>The GBNF text.</summary>
    public override string ToString() => Gbnf;
}
