"""The grounding check: names, menu steps and numbers an answer states must be in the documents."""

from langchain_core.documents import Document

from erp_chatbot.chains.grounding import check_grounding, claims_of, declines
from erp_chatbot.chains.prompts import NOT_COVERED
from erp_chatbot.evaluation import answer_language

CREDIT_NOTES = Document(
    "You can create a credit note from scratch by going to Accounting ‣ Customers ‣ Credit Notes, and by "
    "clicking on *Create*. To do so, open the *Customer Invoice*, and click on *Add Credit Note*. Credit "
    "Notes' numbers start with “R” (e.g., RINV/2019/0004). Payment terms of 30 days apply."
)


def test_claims_are_marked_names_menu_steps_and_numbers():
    answer = (
        "1. Go to **Accounting ‣ Customers ‣ Credit Notes**.\n2. Click *Add Credit Note* and pay within 30 days.\n"
        "3. Then open Sales > Orders and press `Confirm`."
    )
    assert claims_of(answer) == [
        "Accounting",
        "Customers",
        "Credit Notes",
        "Add Credit Note",
        "Confirm",
        "Sales",
        "Orders",
        "30",
    ]


def test_an_answer_copied_from_the_documents_is_supported():
    answer = "Open the **Customer Invoice** and click **Add Credit Note** (Accounting ‣ Customers ‣ Credit Notes)."
    grounding = check_grounding(answer, [CREDIT_NOTES])
    assert grounding.supported and not grounding.declined and grounding.claims == 5


def test_invented_menus_buttons_and_numbers_are_named():
    answer = "Go to **Yahoo ‣ Refunds**, click *Refund Now* and the money arrives in 3 days."
    grounding = check_grounding(answer, [CREDIT_NOTES])
    assert grounding.unsupported == ["Yahoo", "Refunds", "Refund Now", "3"]
    assert check_grounding(answer, [CREDIT_NOTES], question="Why 3 days for Refunds?").unsupported == [
        "Yahoo",
        "Refund Now",
    ]


def test_a_korean_answer_keeps_english_names_and_may_translate_others():
    answer = "**Accounting ‣ Customers ‣ Credit Notes** 메뉴에서 **신용 메모**를 만들고 *Add Credit Note*를 누릅니다."
    assert check_grounding(answer, [CREDIT_NOTES]).supported  # 신용 메모 translates a name of an English page
    wrong = "**Accounting ‣ Refund Center** 메뉴에서 환불합니다."
    assert check_grounding(wrong, [CREDIT_NOTES]).unsupported == ["Refund Center"]
    korean_page = Document("**구매 > 주문** 메뉴에서 **주문 확정**을 누릅니다.")
    assert check_grounding("**구매 > 발주 센터** 메뉴로 갑니다.", [korean_page]).unsupported == ["발주 센터"]


def test_an_answer_that_names_nothing_is_vague_not_unsupported():
    vague = check_grounding("네, 환불 메모를 만드는 기능이 있습니다.", [CREDIT_NOTES])
    assert vague.supported and vague.vague and vague.as_dict()["vague"]
    assert not check_grounding("Click *Add Credit Note*.", [CREDIT_NOTES]).vague
    assert not check_grounding("Click *Refund Now*.", [CREDIT_NOTES]).vague  # wrong, not vague
    assert not check_grounding(NOT_COVERED["ko"], [CREDIT_NOTES]).vague


def test_declines_in_both_languages_are_recognised():
    for sentence in NOT_COVERED.values():
        assert declines(sentence) and check_grounding(sentence, [CREDIT_NOTES]).declined
    assert declines("The documents do not mention the boiling point of water.")
    assert declines("문서에 해당 내용이 없습니다.")
    assert not declines("Click Add Credit Note. If the invoice is not covered by a payment, register one.")


def test_answer_language_ignores_names_kept_in_english():
    korean = (
        "1. **Accounting ‣ Customers ‣ Credit Notes** 메뉴로 이동합니다.\n2. **Add Credit Note** 버튼을 클릭합니다."
    )
    assert answer_language(korean) == "ko"
    assert answer_language("1. Go to **Accounting ‣ Customers**.\n2. Click **Add Credit Note**.") == "en"


def test_numbers_followed_by_korean_units_are_claims_too():
    assert claims_of("에베레스트에서 물은 71도에서 끓고, 30일 이내에 제출합니다.") == ["71", "30"]
    page = Document("Submit the report within 30 days.")
    assert check_grounding("30일 이내에 제출하고 45일 뒤 승인됩니다.", [page]).unsupported == ["45"]


def test_steps_copied_from_the_worked_example_are_unsupported():
    # The demo's 1.5B once answered the sample knowledge's stock-move question with its own first
    # step, then the worked example's steps; the example's prose is a copy wherever no document says it.
    stock_moves = Document("재고 이동 메뉴 **재고 > 보고 > 재고 이동** (Inventory > Reporting > Stock Moves)")
    own = "1. **재고 > 보고 > 재고 이동** 메뉴로 이동합니다.\n"
    copied = "2. 포드를 열어 무게를 비행 적재 목록과 비교합니다."
    assert check_grounding(own, [stock_moves]).supported
    assert check_grounding(own + copied, [stock_moves]).unsupported == [
        "포드를 열어 무게를 비행 적재 목록과 비교합니다"
    ]
    pods = Document("포드를 열어 무게를 비행 적재 목록과 비교합니다. **Approve**를 누릅니다.")
    assert check_grounding(copied + " **Approve**", [pods]).supported  # the documents say it: not a copy
    assert not check_grounding("1. **Starport ‣ Cargo Pods ‣ Ready** 메뉴로 이동합니다.", [stock_moves]).supported
    approve = Document("Open the expense report and click **Approve**.")
    assert check_grounding("1. **Approve** 버튼을 클릭합니다.", [approve]).supported  # a real button, not a copy


def test_list_numbers_and_particles_on_names_are_not_claims():
    # The 1.5B's 12-step Korean answers were flagged for "10" and "11" (list markers), and
    # "Warehouse를" (a particle written onto a name the documents hold) was reported as invented.
    page = Document("Go to Inventory ‣ Configuration ‣ Warehouse and set *Value* to 60.")
    answer = "9. **Value**에 60을 입력합니다.\n10. Inventory > Configuration > Warehouse를 선택합니다.\n11) 저장합니다."
    assert claims_of(answer) == ["Value", "Inventory", "Configuration", "Warehouse", "60"]
    assert check_grounding(answer, [page]).supported
    assert check_grounding("10. 값을 11로 바꿉니다.", [page]).unsupported == ["11"]  # a number in the step is


def test_an_unmarked_menu_path_ends_with_its_sentence():
    # Odoo: "go to Helpdesk ‣ Configuration ‣ Stages. Then, create ..." was read as the step "Stages Then".
    page = Document("To set up stages, go to Helpdesk ‣ Configuration ‣ Stages. Then, create stages.")
    line = "To set up stages, go to Helpdesk ‣ Configuration ‣ Stages. Then, create stages."
    assert claims_of(line) == ["Helpdesk", "Configuration", "Stages"]
    assert check_grounding(line, [page]).supported
    assert claims_of("Then open Sales > Orders, Quotations and Invoices") == ["Sales", "Orders"]
