using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Tests.Grammars;

public class GbnfGrammarTests
{
    private static string GbnfPath(string name) => Path.Combine(TestPaths.RepoRoot, "tests", "data", "gbnf", name + ".gbnf");

    private static Grammar Load(string name) => Grammar.FromGbnf(File.ReadAllText(GbnfPath(name)));

    public static readonly string[] LlamaCppGrammars = ["arithmetic", "c", "chess", "english", "japanese", "json", "json_arr", "list"];

    public static IEnumerable<object[]> Samples() =>
    [
        ["json", "{\"a\": 1, \"b\": [true, null, \"x\\n\\u00e9\"], \"c\": {}}", true],
        ["json", "{\"é\":-0.5e+3}", true],
        ["json", "{\"a\" 1}", false],
        ["json", "[1]", false],
        ["json", "{\"a\": 01}", false],
        ["json_arr", "[\n1,\n\"two\"]", true],
        ["json_arr", "[1]", false],
        ["arithmetic", "a+b=c\n", true],
        ["arithmetic", "(x1 *2)= 3\n", true],
        ["arithmetic", "(x1 * 2)= 3\n", false],
        ["arithmetic", "a+=b\n", false],
        ["chess", "1. e4 e5\n2. Nf3 Nc6\n", true],
        ["chess", "1. e4 e5\n2. O-O-O Qxd8#\n", true],
        ["chess", "1. e4 e5\n", false],
        ["chess", "1. e9 e5\n2. a1 a2\n", false],
        ["c", "int main(){return 0;}", true],
        ["c", "int f(int x){x = x*2;/* twice */return x;}", true],
        ["c", "int main() {}", false],
        ["english", "Hello, world! (1+1=2)", true],
        ["english", "héllo", false],
        ["japanese", "こんにちは 世界。", true],
        ["japanese", "hello", false],
        ["list", "- a\n- b c\n", true],
        ["list", "- a\n\n", false],
        ["list", "", false],
    ];

    [Theory]
    [MemberData(nameof(Samples))]
    public void LlamaCppGrammarsAcceptAndRejectKnownStrings(string grammar, string text, bool accepted)
    {
        Assert.Equal(accepted, Load(grammar).IsMatch(text));
    }

    [Fact]
    public void EveryLlamaCppGrammarLoads()
    {
        foreach (string name in LlamaCppGrammars)
            Assert.Equal("root", Load(name).RootRule);
    }

    [Fact]
    public void PrefixesAreRecognizedAndDeadEndsAreNot()
    {
        Grammar json = Load("json");
        Assert.True(json.IsPrefix("{\"ab"));
        Assert.True(json.IsPrefix("{\"é"[..3]));
        Assert.False(json.IsMatch("{\"ab"));
        Assert.False(json.IsPrefix("{\"a\"}"));
    }

    [Fact]
    public void SyntaxFeaturesMatchAsInLlamaCpp()
    {
        var g = Grammar.FromGbnf("""
            # comment
            root ::= "a"{2} b{1,3} c{2,} d? ("x" | "y")* [^a-c\x00]+ "\u00e9" .
            b ::= "b"   # trailing comment
            c ::= [c-]
            d ::= "d" |
              "D"
            """);
        Assert.True(g.IsMatch("aabcc-xyxzzé!"));
        Assert.True(g.IsMatch("aabbbc-cDdé\n"));
        Assert.False(g.IsMatch("abcczé!"));     // a{2}
        Assert.False(g.IsMatch("aabbbbcczé!")); // b{1,3}
        Assert.False(g.IsMatch("aabczé!"));     // c{2,}
        Assert.False(g.IsMatch("aabccaé!"));    // [^a-c]
        Assert.False(g.IsMatch("aabcczé"));     // . needs one more character
    }

    public static IEnumerable<object[]> Malformed() =>
    [
        ["root ::= foo", "rule 'foo' is used but not defined", 1, 10],
        ["root ::= \"abc", "unterminated string literal", 1, 10],
        ["root ::= [a-", "unterminated character class", 1, 10],
        ["root ::= (\"a\"", "missing ')'", 1, 14],
        ["root ::= \"a\" |\n  \"b\" root\nx ::= root", "", 0, 0], // fine: right recursion, "|" continues on the next line
        ["root ::= \"a\"\n  | \"b\"", "expected a rule name, found '|'", 2, 3], // as llama.cpp: "|" cannot start a line
        ["root ::= x\nx ::= root \"a\" | \"b\"", "left-recursive", 0, 0],
        ["root ::= y? root \"a\"\ny ::= \"b\"", "left-recursive", 1, 1],
        ["a ::= \"x\"", "there is no 'root' rule", 0, 0],
        ["root ::= \"a\"\nroot ::= \"b\"", "rule 'root' is defined twice", 2, 1],
        ["root ::= \"\\q\"", "unknown escape '\\q'", 1, 11],
        ["root ::= * \"a\"", "nothing before it to repeat", 1, 10],
        ["root ::= \"a\"{3,1}", "below its minimum", 1, 13],
        ["root ::= <[12]>", "token references", 1, 10],
        ["root := \"a\"", "expected '::='", 1, 6],
        ["root ::= \"a\" ) ", "unexpected ')'", 1, 14],
        ["root ::= \"\\x4\"", "expected 2 hex digits", 1, 11],
    ];

    [Theory]
    [MemberData(nameof(Malformed))]
    public void MalformedGrammarsFailWithTheLineAndColumn(string gbnf, string message, int line, int column)
    {
        if (message.Length == 0)
        {
            Grammar.FromGbnf(gbnf);
            return;
        }
        var e = Assert.Throws<GrammarFormatException>(() => Grammar.FromGbnf(gbnf));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        if (line > 0)
        {
            Assert.Equal(line, e.Line);
            Assert.Equal(column, e.Column);
        }
        Assert.IsAssignableFrom<FormatException>(e);
    }

    public static IEnumerable<object[]> GrammarsAndVocabs() =>
        from g in LlamaCppGrammars from v in Vocabs.Names select new object[] { g, v };

    /// <summary>Text sampled under each grammar with random logits parses back under it, on both kinds of vocabulary.</summary>
    [Theory]
    [MemberData(nameof(GrammarsAndVocabs))]
    public void SampledTextMatchesTheGrammar(string name, string vocabName)
    {
        Grammar grammar = Load(name);
        Vocab vocab = Vocabs.ByName(vocabName);
        for (ulong seed = 1; seed <= 6; seed++)
        {
            RandomModel.Output output = RandomModel.Generate(grammar, vocab, seed, maxTokens: 200);
            // Every output is a prefix of the language; a finished one is in it.
            Assert.True(grammar.IsPrefix(output.Text), $"{name}/{vocabName}/{seed}: not a prefix: {output.Text}");
            if (output.Finished)
                Assert.True(grammar.IsMatch(output.Text), $"{name}/{vocabName}/{seed}: ended but does not match: {output.Text}");
        }
    }
}
